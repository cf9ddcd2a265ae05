"""Liveness, readiness, metrics, the OpenAPI schema, and the not-ready state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from service_helpers import PRETRAINED, REPO, live_server, of_kind, upload


def test_healthz(server: httpx.Client) -> None:
    assert server.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_model_index_and_devices(server: httpx.Client,
                                                service_index: Path) -> None:
    body = server.get("/readyz").json()
    info = json.loads((service_index / "index.json").read_text())
    assert body["ready"] is True
    assert body["model"]["hash"] == json.loads((PRETRAINED / "model.json").read_text())[
        "content_hash"]
    assert body["model"]["provider"] == "CPUExecutionProvider" and not body["model"]["on_gpu"]
    assert body["index"]["build_id"] == info["build_id"]
    assert body["index"]["items"] == info["counts"]["items"] > 0
    count = info["counts"]["items"]
    assert body["index"]["vectors"] == {"image": count, "audio": count, "audio_features": count}
    assert body["index"]["on_gpu"] is False and body["index"]["kind"] == "flat"


def test_metrics_count_requests_latency_errors_and_index_size(server: httpx.Client,
                                                              service_corpus: Path) -> None:
    pair = of_kind(service_corpus, "pair")[0]
    server.post("/v1/search", files=upload(service_corpus / pair["image"]))
    server.get("/v1/items/definitely-missing")
    text = server.get("/metrics").text
    assert 'avsearch_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 'avsearch_request_seconds_bucket{le="0.05",method="POST",route="/v1/search"}' in text
    assert 'avsearch_errors_total{route="/v1/items/{item_id:path}",status="404"}' in text
    items = server.get("/readyz").json()["index"]["items"]
    assert f"avsearch_index_items {float(items)}" in text
    for modality in ("image", "audio", "audio_features"):
        assert f'avsearch_index_vectors{{modality="{modality}"}} {float(items)}' in text
    assert 'avsearch_query_stage_seconds_count{stage="embed"}' in text


def test_openapi_documents_every_endpoint(server: httpx.Client) -> None:
    schema = server.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/v1/search", "/v1/search/by-id/{item_id}", "/v1/localize",
                 "/v1/items/{item_id}", "/v1/items/{item_id}/image", "/v1/items/{item_id}/audio",
                 "/healthz", "/readyz", "/metrics", "/v1/admin/reindex",
                 "/v1/admin/jobs/{job_id}"):
        assert path in paths, path
    assert "415" in paths["/v1/search"]["post"]["responses"]
    assert server.get("/docs").status_code == 200


def test_not_ready_with_an_index_of_another_model(tiny_bundle: Path, service_index: Path) -> None:
    with live_server(ready=False, model_dir=tiny_bundle, index_dir=service_index) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "was built with model" in ready.json()["error"]["message"]
        search = client.post("/v1/search", files={"file": ("x.wav", b"RIFF")})
        assert search.status_code == 503 and search.json()["error"]["code"] == "not_ready"
        assert client.get("/healthz").status_code == 200


def test_the_service_never_imports_torch() -> None:
    code = ("import sys; import service.app, service.cli, models.cli; "
            "models.cli.build_parser(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == "False"

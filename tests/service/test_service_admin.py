"""The admin API: a background rebuild swapped in under concurrent queries, with no failed
request; a failed rebuild leaves the old index serving; the token guards it all."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import httpx
from service_helpers import PRETRAINED, build_index, live_server, of_kind, upload

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _subset_corpus(source: Path, out: Path, count: int) -> Path:
    """A corpus of the first ``count`` pairs of ``source`` (with copies of its media)."""
    out.mkdir()
    for name in ("images", "audio"):
        shutil.copytree(source / name, out / name)
    rows = of_kind(source, "pair")[:count]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _wait(client: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/admin/jobs/{job_id}", headers=AUTH).json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_reindex_swaps_under_load_and_a_failed_one_keeps_serving(
        own_index: Path, service_corpus: Path, tmp_path: Path) -> None:
    corpus = _subset_corpus(service_corpus, tmp_path / "new-corpus", 40)
    query = service_corpus / of_kind(service_corpus, "pair")[0]["audio"]
    with live_server(model_dir=PRETRAINED, index_dir=own_index, corpus_dir=corpus,
                     admin_token=TOKEN) as client:
        before = client.get("/readyz").json()["index"]
        statuses: list[int] = []
        answered_by: set[str] = set()
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=client.base_url, timeout=60) as own:
                while not stop.is_set():
                    answer = own.post("/v1/search", files=upload(query), data={"k": 3})
                    statuses.append(answer.status_code)
                    if answer.status_code == 200:
                        answered_by.add(answer.json()["index"])

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            started = client.post("/v1/admin/reindex", headers=AUTH)
            assert started.status_code == 202, started.text
            job = started.json()
            again = client.post("/v1/admin/reindex", headers=AUTH)
            assert again.status_code == 409 and job["id"] in again.json()["error"]["message"]
            done = _wait(client, job["id"])
            time.sleep(0.3)  # queries keep coming after the swap
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert done["state"] == "succeeded", done
        assert done["done"] == done["total"] == 40
        after = client.get("/readyz").json()["index"]
        assert after["build_id"] == done["build_id"] != before["build_id"]
        assert after["items"] == 40
        assert len(statuses) > 10 and set(statuses) == {200}, statuses
        assert answered_by == {before["build_id"], after["build_id"]}

        # A rebuild that fails (a damaged manifest) leaves the new index serving.
        (corpus / "manifest.jsonl").write_text('{"id": "broken", ' + "\n")
        failed = _wait(client, client.post("/v1/admin/reindex", headers=AUTH).json()["id"])
        assert failed["state"] == "failed"
        assert "not valid JSON" in failed["message"] and "still serving" in failed["message"]
        assert client.get("/readyz").json()["index"]["build_id"] == after["build_id"]
        assert client.post("/v1/search", files=upload(query)).status_code == 200


def test_admin_needs_the_token(server: httpx.Client, service_index: Path) -> None:
    off = server.post("/v1/admin/reindex", headers=AUTH)
    assert off.status_code == 404 and off.json()["error"]["code"] == "admin_disabled"
    with live_server(model_dir=PRETRAINED, index_dir=service_index,
                     admin_token=TOKEN) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            answer = client.post("/v1/admin/reindex", headers=headers)
            assert answer.status_code == 401, headers
            assert answer.headers["www-authenticate"] == "Bearer"
        unknown = client.get("/v1/admin/jobs/nope", headers=AUTH)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_job"


def test_a_version_written_by_the_indexer_cli_is_swapped_in(
        own_index: Path, service_corpus: Path, tmp_path: Path) -> None:
    """`avsearch index build` into the serving INDEX_DIR (a batch rebuild from another process
    or container) is picked up without a restart."""
    corpus = _subset_corpus(service_corpus, tmp_path / "batch-corpus", 25)
    with live_server(model_dir=PRETRAINED, index_dir=own_index, reload_interval=0.1) as client:
        before = client.get("/readyz").json()["index"]
        build_index(corpus, own_index)
        deadline = time.monotonic() + 30
        while client.get("/readyz").json()["index"]["build_id"] == before["build_id"]:
            assert time.monotonic() < deadline, "the new version was not picked up in 30 s"
            time.sleep(0.1)
        assert client.get("/readyz").json()["index"]["items"] == 25
        answer = client.post("/v1/search", files=upload(corpus / of_kind(corpus, "pair")[0][
            "image"]))
        assert answer.status_code == 200 and answer.json()["index"] != before["build_id"]

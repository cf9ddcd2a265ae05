"""``avsearch serve``: a real process configured by flags and environment variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from service_helpers import PRETRAINED, REPO, free_port, of_kind, upload


def _serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "models.cli", "serve", *args], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_ready(base_url: str, process: subprocess.Popen, in_a_row: int = 1) -> None:
    """Until ``/readyz`` answers 200 on ``in_a_row`` fresh connections in a row. With several
    processes the kernel spreads new connections over them, and each loads the model and the
    index on its own (slowly on a busy machine), so one ready answer does not mean all are."""
    deadline = time.monotonic() + 60
    ready = 0
    while ready < in_a_row:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"not ready in 60 s ({ready} ready in a row)"
        try:
            with httpx.Client(base_url=base_url, timeout=60) as fresh:
                ready = ready + 1 if fresh.get("/readyz").status_code == 200 else 0
        except httpx.TransportError:
            ready = 0
        if not ready:
            time.sleep(0.2)


def _answered(base_url: str, send: Callable[[httpx.Client], httpx.Response]) -> httpx.Response:
    """``send`` on a fresh connection until a loaded process answers it. With several processes,
    one that only begins to take connections after the others are ready is still loading, and
    answers 503 ``not_ready`` with a Retry-After, which a client is to retry."""
    deadline = time.monotonic() + 60
    while True:
        with httpx.Client(base_url=base_url, timeout=60) as fresh:
            answer = send(fresh)
        if answer.status_code != 503 or answer.json()["error"]["code"] != "not_ready":
            return answer
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)


def test_serve_from_environment_variables(service_index: Path, service_corpus: Path) -> None:
    port = free_port()
    process = _serve([], env={"AVSEARCH_MODEL_DIR": str(PRETRAINED),
                              "AVSEARCH_INDEX_DIR": str(service_index),
                              "AVSEARCH_PORT": str(port), "AVSEARCH_WORKERS": "2"})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_ready(str(client.base_url), process)
            pair = of_kind(service_corpus, "pair")[0]
            answer = client.post("/v1/search", files=upload(service_corpus / pair["audio"]))
            assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    # uvicorn shuts down gracefully, then re-raises the signal it caught (the shell's view).
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert f"serving on http://127.0.0.1:{port}" in output


def test_several_processes_share_one_port_and_the_jobs(own_index: Path,
                                                      service_corpus: Path) -> None:
    """--processes 2: both answer; a reindex started in one is reported by either."""
    port = free_port()
    token = "several-processes-token-0123"
    process = _serve(["--model", str(PRETRAINED), "--index", str(own_index), "--port",
                      str(port), "--processes", "2"],
                     env={"AVSEARCH_ADMIN_TOKEN": token, "AVSEARCH_RELOAD_INTERVAL": "0.2"})
    auth = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            _wait_ready(str(client.base_url), process, in_a_row=8)
            base = str(client.base_url)
            image = upload(service_corpus / of_kind(service_corpus, "pair")[0]["image"])
            for _ in range(6):  # new connections: the kernel spreads them over the processes
                answer = _answered(base, lambda fresh: fresh.post("/v1/search", files=image))
                assert answer.status_code == 200, answer.text
            job = client.post("/v1/admin/reindex", headers=auth).json()
            deadline = time.monotonic() + 120
            state = "queued"
            while state not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, "the reindex did not finish"
                seen = _answered(base, lambda fresh: fresh.get(f"/v1/admin/jobs/{job['id']}",
                                                               headers=auth))
                assert seen.status_code == 200, seen.text
                state = seen.json()["state"]
                time.sleep(0.2)
            assert state == "succeeded", seen.json()
            build_id = seen.json()["build_id"]
            deadline = time.monotonic() + 30
            while True:  # the other process picks the new version up by itself
                ids = {_answered(base, lambda fresh: fresh.get("/readyz")).json()["index"]
                       ["build_id"] for _ in range(4)}
                if ids == {build_id}:
                    break
                assert time.monotonic() < deadline, ids
                time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert "2 processes" in output


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["--model", "/nowhere/model", "--index", "/nowhere/index"], {}, "/nowhere/model"),
    (["--model", str(PRETRAINED), "--index", "/nowhere/index"], {}, "/nowhere/index"),
    ([], {"AVSEARCH_MODEL_DIR": "", "AVSEARCH_INDEX_DIR": ""}, "model_dir"),
    (["--model", str(PRETRAINED), "--index", "x"], {"AVSEARCH_PORT": "http"}, "port"),
    (["--model", str(PRETRAINED), "--index", "x"], {"AVSEARCH_ADMIN_TOKEN": "short"},
     "at least 16 characters"),
])
def test_serve_refuses_bad_settings_in_one_line(args: list[str], env: dict[str, str],
                                                expected: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AVSEARCH_")}
    result = subprocess.run([sys.executable, "-m", "models.cli", "serve", *args], cwd=REPO,
                            env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avsearch serve: error:"), result.stderr
    assert expected in lines[0]

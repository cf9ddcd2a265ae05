"""``avsearch demo``: the built-in sample, the shipped model, a real server process."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"


def _avsearch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AVSEARCH_")}
    return subprocess.run([sys.executable, "-m", "models.cli", *args], cwd=REPO, env=clean,
                          capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = _avsearch("demo", "--no-serve", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "[1/2] building the AV-digits corpus" in result.stdout
    assert "[2/2] indexing it with" in result.stdout
    return out


def test_sample_is_small_real_and_licensed() -> None:
    recordings = sorted((SAMPLE / "fsdd" / "recordings").glob("*.wav"))
    speakers = {p.name.split("_")[1] for p in recordings}
    digits = {p.name.split("_")[0] for p in recordings}
    assert len(recordings) >= 300 and len(speakers) >= 4 and digits == set("0123456789")
    labels = gzip.decompress(next((SAMPLE / "mnist").glob("*-labels-idx1-ubyte.gz")).read_bytes())
    per_digit = [labels[8:].count(bytes([d])) for d in range(10)]
    assert min(per_digit) >= 100, per_digit
    size = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert size < 6 * 1024 * 1024, f"the sample is {size / 2**20:.1f} MiB"
    notice = (SAMPLE / "NOTICE.md").read_text()
    assert "CC BY-SA 4.0" in notice and "CC BY-SA 3.0" in notice and "Jakobovski" in notice
    ignored = subprocess.run(["git", "check-ignore", "-q", str(recordings[0])], cwd=REPO)
    assert ignored.returncode == 1, "data/sample is hidden by .gitignore"


def test_demo_builds_corpus_and_index_from_the_sample(demo_dir: Path) -> None:
    rows = [json.loads(line) for line in (demo_dir / "corpus" / "manifest.jsonl").open()]
    kinds = {row["kind"] for row in rows}
    assert kinds == {"pair", "scene", "clip"}
    assert {row["split"] for row in rows} == {"test"}
    info = json.loads((demo_dir / "index" / "index.json").read_text())
    assert info["counts"]["items"] == len(rows)
    assert Path(info["corpus"]) == (demo_dir / "corpus").resolve()
    assert (demo_dir / "corpus" / "NOTICE.md").is_file()


def test_second_start_reuses_the_corpus_and_index(demo_dir: Path) -> None:
    build_id = (demo_dir / "index").resolve().name
    started = time.monotonic()
    result = _avsearch("demo", "--no-serve", "--out", str(demo_dir))
    assert result.returncode == 0, result.stderr
    assert "reusing the corpus and index" in result.stdout
    assert (demo_dir / "index").resolve().name == build_id
    assert time.monotonic() - started < 30


def test_demo_serves_search_on_the_sample(demo_dir: Path, tmp_path: Path) -> None:
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AVSEARCH_")}
    log = tmp_path / "demo.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "models.cli", "demo", "--out", str(demo_dir), "--port",
             str(port)], cwd=REPO, env=clean, stdout=sink, stderr=subprocess.STDOUT, text=True)
    announced = f"the search page is at http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while True:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "not ready in 90 s"
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            pair = next(json.loads(line) for line in
                        (demo_dir / "corpus" / "manifest.jsonl").open()
                        if '"pair"' in line)
            image = demo_dir / "corpus" / pair["image"]
            answer = client.post("/v1/search", files={"file": (image.name, image.read_bytes())},
                                 data={"k": "5"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["query"]["direction"] == "im2aud"
            assert len(body["results"]) == 5
            # the shipped model finds sounds of the digit drawn (it has seen these speakers)
            assert pair["labels"][0] in body["results"][0]["labels"]
            assert client.get("/docs").status_code == 200
        while announced not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)  # printed by the demo once it has seen /readyz answer
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    output = log.read_text()
    assert announced in output and f"API docs at http://127.0.0.1:{port}/docs" in output, output


def test_demo_refuses_a_taken_port_in_one_line(demo_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _avsearch("demo", "--out", str(demo_dir), "--port", str(port), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avsearch demo: error: cannot listen"), lines


def test_demo_without_sample_data_says_so(tmp_path: Path) -> None:
    result = _avsearch("demo", "--no-serve", "--out", str(tmp_path / "out"),
                       "--source", str(tmp_path / "nothing"), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no sample data at" in lines[0], lines

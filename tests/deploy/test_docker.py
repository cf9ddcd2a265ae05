"""The CPU image: built from this tree (or reused when built from the same files), run, searched.

Needs a Docker engine (skipped without one) and the base image ``avsearch-base:bookworm``, which
it makes with ``docker/make-base-image.sh`` when it is missing (as root, with debootstrap).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
BASE = os.environ.get("AVSEARCH_BASE", "avsearch-base:bookworm")
# What the build context holds (.dockerignore lets in only these).
CONTEXT = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "models", "indexer",
           "service", "data/sample")
NO_ENGINE = "no Docker engine reachable: install docker.io and start dockerd; see docs/deploy.md"


def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed: {result.stderr[-3000:]}")
    return result


def _engine_reachable() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return _docker("info", timeout=30, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _has_image(name: str) -> bool:
    return _docker("image", "inspect", name, check=False).returncode == 0


def _context_files() -> Iterator[Path]:
    for entry in CONTEXT:
        path = REPO / entry
        if path.is_file():
            yield path
            continue
        for file in sorted(path.rglob("*")):
            parts = file.relative_to(REPO).parts
            if (file.is_file() and "__pycache__" not in parts and file.suffix != ".pyc"
                    and not any(part.endswith(".egg-info") for part in parts)):
                yield file


def context_hash() -> str:
    """A hash of every file the image is built from: the same tree gives the same tag."""
    digest = hashlib.sha256(BASE.encode())
    for file in _context_files():
        digest.update(str(file.relative_to(REPO)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:12]


def _ensure_base() -> None:
    if _has_image(BASE):
        return
    why = f"the base image {BASE} is missing and cannot be made here"
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip(f"{why} (docker/make-base-image.sh needs root and debootstrap)")
    made = subprocess.run(["bash", str(REPO / "docker" / "make-base-image.sh"), BASE],
                          capture_output=True, text=True, timeout=1200)
    if made.returncode != 0 or not _has_image(BASE):
        last = (made.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"{why}: docker/make-base-image.sh failed ({last})")


@pytest.fixture(scope="module")
def image() -> str:
    if not _engine_reachable():
        pytest.skip(NO_ENGINE)
    _ensure_base()
    tag = f"avsearch:cpu-{context_hash()}"
    if not _has_image(tag):
        built = subprocess.run(["docker", "build", "--build-arg", f"BASE={BASE}", "-t", tag,
                                str(REPO)], capture_output=True, text=True, timeout=1800)
        assert built.returncode == 0, (built.stdout + built.stderr)[-5000:]
    size = int(_docker("image", "inspect", "-f", "{{.Size}}", tag).stdout)
    print(f"\n{tag}: {size / 1e6:.0f} MB")
    return tag


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[tuple[str, httpx.Client]]:
    port = _free_port()
    cid = _docker("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8000", image).stdout.strip()
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 120
        while True:
            state = _docker("inspect", "-f", "{{.State.Running}}", cid, check=False).stdout
            assert state.strip() == "true", _docker("logs", cid, check=False).stderr[-3000:]
            assert time.monotonic() < deadline, "not ready in 120 s"
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield cid, client
        client.close()
    finally:
        _docker("rm", "-f", "-v", cid, check=False)


def _sample_png(index: int) -> tuple[bytes, str]:
    from PIL import Image

    from models.corpus.sources import load_mnist

    mnist = load_mnist(SAMPLE)
    buffer = io.BytesIO()
    Image.fromarray(mnist.images[index]).save(buffer, format="PNG")
    return buffer.getvalue(), str(int(mnist.labels[index]))


def test_the_container_serves_search_over_the_baked_demo_index(container) -> None:
    _, client = container
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["index"]["items"] > 2000
    assert ready["model"]["provider"] == "CPUExecutionProvider"
    png, digit = _sample_png(7)
    answer = client.post("/v1/search", files={"file": ("digit.png", png, "image/png")},
                         data={"k": "5"})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert answer.json()["query"]["direction"] == "im2aud" and len(results) == 5
    assert digit in results[0]["labels"]
    audio = client.get(results[0]["media"]["audio"])  # the media volume is readable
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
    wav = sorted((SAMPLE / "fsdd" / "recordings").glob("3_*.wav"))[0]
    answer = client.post("/v1/search", files={"file": (wav.name, wav.read_bytes())})
    assert answer.status_code == 200 and answer.json()["query"]["direction"] == "aud2im"
    assert client.get("/").status_code == 200


def test_the_container_runs_as_a_user_without_torch_and_is_healthy(container) -> None:
    cid, _ = container
    assert _docker("exec", cid, "id", "-u").stdout.strip() != "0"
    no_torch = _docker("exec", cid, "python", "-c", "import torch", check=False)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    no_compiler = _docker("exec", cid, "sh", "-c", "command -v gcc cc pip3", check=False)
    assert no_compiler.stdout.strip() == "", no_compiler.stdout
    health = _docker("inspect", "-f", "{{json .Config.Healthcheck.Test}}", cid).stdout
    assert "/healthz" in health
    # the HEALTHCHECK's own command, run now instead of after its first interval
    import json

    test = json.loads(health)
    assert test[0] == "CMD"
    assert _docker("exec", cid, *test[1:], check=False).returncode == 0

"""Starting a real server for a test, and the media the tests upload."""

from __future__ import annotations

import io
import socket
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn

REPO = Path(__file__).resolve().parents[2]
PRETRAINED = REPO / "models" / "pretrained" / "digits"


def build_index(corpus: Path, out: Path, *extra: str) -> None:
    from models.cli import main

    assert main(["index", "build", "--model", str(PRETRAINED), "--corpus", str(corpus),
                 "--out", str(out), "--kind", "flat", "--quiet", *extra]) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(ready: bool = True, **settings: Any) -> Iterator[httpx.Client]:
    """A uvicorn server on a free loopback port running ``create_app(Settings(**settings))``;
    yields an httpx client for it. With ``ready``, waits for /readyz to answer 200."""
    from service.app import create_app
    from service.settings import Settings

    port = free_port()
    config = Settings(host="127.0.0.1", port=port, **settings)
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive(), "the server stopped during start-up"
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            time.sleep(0.05)
        state = app.state.avsearch
        assert state.loaded.wait(60), "the model and index did not load in 60 s"
        if ready:
            answer = client.get("/readyz")
            assert answer.status_code == 200, answer.text
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(30)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def manifest(corpus: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()
            if line.strip()]


def of_kind(corpus: Path, kind: str) -> list[dict]:
    return [row for row in manifest(corpus) if row.get("kind") == kind]


def upload(path: Path, field: str = "file") -> dict[str, tuple[str, bytes]]:
    return {field: (path.name, path.read_bytes())}

"""``avsearch demo``: the shipped model serving a corpus built from the sample in the repository.

Three steps, each skipped when its output in ``--out`` is already there and up to date:

1. the AV-digits corpus (pairs, 2x2 scenes, mp4 clips; every item in the test split) from
   ``data/sample/`` (a slice of FSDD and MNIST kept in the repository, see its NOTICE.md);
2. an index bundle of it, embedded with the pretrained bundle ``models/pretrained/digits``;
3. the service, by the code path of ``avsearch serve``.

``OUT/demo.json`` records what the corpus and index were made from (the sample's files, the
corpus parameters, the model's hash); a second start that finds the same skips straight to
serving. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from models.errors import AvsearchError

REPO = Path(__file__).resolve().parents[1]  # the checkout, or site-packages once installed
SAMPLE = REPO / "data" / "sample"
PRETRAINED = REPO / "models" / "pretrained" / "digits"  # package data of `models`
STAMP = "demo.json"
SCENES = 100
CLIPS = 10
ABSENT_SHARE = 0.25  # scenes whose spoken digit is off-screen
READY_TIMEOUT_S = 120.0


class DemoError(AvsearchError):
    """The demo cannot run: its sample data is missing, its port is taken, ..."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="build a corpus and index from the built-in sample and serve it",
        description="Build the AV-digits corpus from the sample of FSDD and MNIST kept in "
                    "data/sample/, index it with the pretrained model bundle and serve it "
                    "(a search page at /, the API docs at /docs). A second start reuses the "
                    "corpus and index already in --out. Settings not given as flags come from "
                    "AVSEARCH_* variables, as for `avsearch serve`.")
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="folder for the corpus and the index (default: out/demo)")
    parser.add_argument("--source", type=Path, default=SAMPLE,
                        help="folder with mnist/ and fsdd/ (default: the repository's "
                             "data/sample)")
    parser.add_argument("--host", help="address to listen on (127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, help="port (8000)")
    parser.add_argument("--no-serve", dest="serve", action="store_false",
                        help="build the corpus and index, then stop")
    parser.add_argument("--rebuild", action="store_true",
                        help="build the corpus and index again even if they are up to date")
    parser.set_defaults(run=run_demo)


# ---------------------------------------------------------------------------- building


def _fingerprint(source: Path) -> str:
    """The sample's files (relative paths and sizes): a change in it means a new corpus."""
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(source)}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def _recipe(source: Path, model_hash: str) -> dict[str, Any]:
    return {"source": str(source.resolve()), "sample": _fingerprint(source),
            "split": "test", "scenes": SCENES, "absent_share": ABSENT_SHARE, "clips": CLIPS,
            "model_hash": model_hash}


def _up_to_date(out: Path, recipe: dict[str, Any]) -> bool:
    from indexer.bundle import read_info, resolve_bundle

    stamp = out / STAMP
    try:
        made = json.loads(stamp.read_text())
        info = read_info(resolve_bundle(out / "index"))
    except (OSError, ValueError, AvsearchError):
        return False
    corpus = (out / "corpus").resolve()
    return (made.get("recipe") == recipe and (corpus / "manifest.jsonl").is_file()
            and info.model_hash == recipe["model_hash"] and Path(info.corpus) == corpus)


def _say(message: str) -> None:
    print(f"avsearch demo: {message}", flush=True)


def prepare(out: Path, source: Path, rebuild: bool = False, progress: bool = True) -> bool:
    """Make ``out/corpus`` and ``out/index`` (unless up to date); True when anything was built."""
    from indexer.build import BuildConfig, build
    from indexer.embed import EmbedConfig
    from models.bundle import read_model_info
    from models.corpus.digits import DigitsCorpusConfig, build_digits_corpus

    if not (source / "mnist").is_dir() or not (source / "fsdd").is_dir():
        raise DemoError(f"no sample data at {source} (expected mnist/ and fsdd/): run the demo "
                        "from a checkout of the repository, or pass --source DIR")
    model = read_model_info(PRETRAINED)
    recipe = _recipe(source, model.content_hash)
    if not rebuild and _up_to_date(out, recipe):
        _say(f"reusing the corpus and index in {out} (--rebuild to make them again)")
        return False
    if out.exists() and not out.is_dir():
        raise DemoError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / STAMP).unlink(missing_ok=True)

    started = time.monotonic()
    _say(f"[1/2] building the AV-digits corpus from {source} into {out / 'corpus'}")
    summary = build_digits_corpus(DigitsCorpusConfig(
        source=source, out=out / "corpus", split="test", scenes=SCENES, absent_share=ABSENT_SHARE,
        clips=CLIPS,
        overwrite=True, progress=progress))
    print(summary.describe(), flush=True)
    _say(f"[2/2] indexing it with {PRETRAINED} into {out / 'index'}")
    report = build(BuildConfig(
        model=PRETRAINED, corpus=out / "corpus", out=out / "index",
        embed=EmbedConfig(progress=progress), overwrite=True,
        argv=("avsearch", "demo", "--out", str(out))))
    print(report.summary(), flush=True)
    (out / STAMP).write_text(json.dumps({"recipe": recipe}, indent=2) + "\n")
    _say(f"corpus and index ready in {time.monotonic() - started:.0f} s")
    return True


# ---------------------------------------------------------------------------- serving


def _browser_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(
        host, f"[{host}]" if ":" in host else host)


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DemoError(f"cannot listen on {host}:{port} ({exc.strerror}): pick another "
                            "port with --port") from None


def _announce_when_ready(base: str) -> None:
    """Print the URLs once /readyz answers 200 (the model and index are loaded)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    _say(f"ready: the search page is at {base}/ and the API docs at {base}/docs "
                         "(Ctrl-C stops)")
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    print(f"avsearch demo: the service did not answer {base}/readyz within "
          f"{READY_TIMEOUT_S:.0f} s; see the log above", file=sys.stderr, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from service.cli import load_settings, run_serve

    out: Path = args.out
    prepare(out, args.source, rebuild=args.rebuild)
    serve_args = argparse.Namespace(
        model_dir=str(PRETRAINED), index_dir=str(out / "index"), corpus_dir=str(out / "corpus"),
        host=args.host, port=args.port, device=None, workers=None, max_upload_mb=None,
        log_level=None)
    if not args.serve:
        _say("done; serve it with: avsearch serve --model "
             f"{PRETRAINED} --index {out / 'index'} --corpus {out / 'corpus'}")
        return 0
    settings = load_settings(serve_args)
    _check_port(settings.host, settings.port)
    base = f"http://{_browser_host(settings.host)}:{settings.port}"
    _say(f"starting the service on {settings.host}:{settings.port}; the page will be at {base}/")
    threading.Thread(target=_announce_when_ready, args=(base,), name="avsearch-demo-ready",
                     daemon=True).start()
    return run_serve(serve_args)

"""``avsearch serve``: run the API under uvicorn."""

from __future__ import annotations

import argparse
import os

from models.errors import AvsearchError


class SettingsError(AvsearchError):
    """A setting (flag or AVSEARCH_* variable) that cannot work."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the search API (FastAPI under uvicorn)",
        description="Serve search and localisation over HTTP. Every flag can also be set with "
                    "an environment variable (AVSEARCH_MODEL_DIR, AVSEARCH_INDEX_DIR, "
                    "AVSEARCH_HOST, AVSEARCH_PORT, AVSEARCH_DEVICE, AVSEARCH_WORKERS, "
                    "AVSEARCH_MAX_UPLOAD_MB, AVSEARCH_CORPUS_DIR, AVSEARCH_ADMIN_TOKEN, ...); "
                    "flags win.")
    parser.add_argument("--model", dest="model_dir", help="model bundle folder")
    parser.add_argument("--index", dest="index_dir", help="index bundle folder")
    parser.add_argument("--corpus", dest="corpus_dir",
                        help="corpus a reindex reads (default: the index's own)")
    parser.add_argument("--host", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (8000)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"],
                        help="ONNX Runtime and FAISS device (auto)")
    parser.add_argument("--workers", type=int,
                        help="queries answered at once per process (one per core)")
    parser.add_argument("--processes", type=int,
                        help="server processes (1); each loads the model and the index")
    parser.add_argument("--max-upload-mb", type=float, help="largest upload (25)")
    parser.add_argument("--expand", type=int,
                        help="the index's nearest sounds a sound query is averaged with (0: "
                             "never, the default; 10 is what docs/benchmarks.md measured)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(run=run_serve)


def load_settings(args: argparse.Namespace):
    """Settings from AVSEARCH_* variables, overridden by the flags given."""
    from pydantic import ValidationError

    from service.settings import Settings

    flags = {name: getattr(args, name) for name in (
        "model_dir", "index_dir", "corpus_dir", "host", "port", "device", "workers", "processes",
        "max_upload_mb", "log_level") if getattr(args, name, None) is not None}
    try:
        return Settings(**flags)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"])
            hint = f"--{name.replace('_dir', '').replace('_', '-')} or AVSEARCH_{name.upper()}"
            problems.append(f"{name} ({hint}): {error['msg']}")
        raise SettingsError("; ".join(problems)) from None


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from indexer.bundle import resolve_bundle
    from models.bundle import read_model_info
    from service.app import create_app

    settings = load_settings(args)
    read_model_info(settings.model_dir)  # refuse a wrong path now, in one line
    resolve_bundle(settings.index_dir)
    processes = f", {settings.processes} processes" if settings.processes > 1 else ""
    print(f"avsearch: serving on http://{settings.host}:{settings.port} "
          f"(the page at /, API docs at /docs; model {settings.model_dir}, "
          f"index {settings.index_dir}{processes})", flush=True)
    common = {"host": settings.host, "port": settings.port, "log_level": settings.log_level,
              "timeout_graceful_shutdown": 10}
    if settings.processes == 1:
        uvicorn.run(create_app(settings), **common)
    else:  # uvicorn starts the processes; each builds its app from the environment
        os.environ.update(settings.to_environment())
        from service.nodelay import NoDelayHTTPProtocol

        uvicorn.run("service.app:create_app_from_environment", factory=True,
                    workers=settings.processes, http=NoDelayHTTPProtocol, **common)
    return 0

"""The ``avsearch`` command: one entry point, one subcommand per job.

Each job's module exposes ``register(subparsers)``, which adds its parser and sets ``run`` (a
function of the parsed arguments returning an exit code). Modules are imported only when their
command is registered, and heavy imports (torch) happen inside ``run``, so ``avsearch corpus`` or
``avsearch eval`` never load torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from models.errors import AvsearchError

# Module paths, in the order their commands appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "models.corpus.cli",
    "models.training.cli",
    "models.export_cli",
    "models.calibrate_cli",
    "indexer.cli",
    "models.evaluation.cli",
    "service.cli",
    "service.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avsearch",
        description="Cross-modal audio-image search and sounding-object localisation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # recorded by commands whose outputs say how they were made
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except AvsearchError as exc:
        print(f"avsearch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        print(f"avsearch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

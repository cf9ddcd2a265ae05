"""Helpers of the indexer tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np

from indexer import kinds
from models.cli import main


def build(model: Path, corpus: Path, out: Path, *extra: str) -> int:
    """``avsearch index build`` on the CPU, quietly."""
    return main(["index", "build", "--model", str(model), "--corpus", str(corpus),
                 "--out", str(out), "--device", "cpu", "--quiet", *extra])


def copy_corpus(corpus: Path, dest: Path, keep: int | None = None) -> Path:
    """A private copy of a corpus (its manifest cut to the first ``keep`` items)."""
    shutil.copytree(corpus, dest)
    if keep is not None:
        manifest = dest / "manifest.jsonl"
        lines = manifest.read_text().splitlines()[:keep]
        manifest.write_text("\n".join(lines) + "\n")
    return dest


def append_items(corpus: Path, *rows: dict) -> None:
    with (corpus / "manifest.jsonl").open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def one_line_error(err: str) -> str:
    """The error output of a failed command: exactly one line, returned."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def check_ids_agree(index_dir: Path) -> list[int]:
    """SQLite row ids == FAISS ids (every modality) == the stored embeddings' row ids."""
    root = index_dir.resolve()
    with closing(sqlite3.connect(root / "items.sqlite")) as db:
        rowids = [row[0] for row in db.execute("SELECT rowid FROM items ORDER BY rowid")]
    for modality in json.loads((root / "index.json").read_text())["modalities"]:
        index = kinds.read_index(root / f"{modality}.faiss")
        assert kinds.index_ids(index).tolist() == rowids
        assert np.load(root / f"{modality}.npy").shape == (len(rowids), 128)
    assert np.load(root / "rowids.npy").tolist() == rowids
    return rowids

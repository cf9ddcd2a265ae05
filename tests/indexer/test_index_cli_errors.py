"""The commands' user errors: one line on stderr, exit status 2, and nothing changed."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import pytest
from index_helpers import build, copy_corpus, one_line_error

from indexer.bundle import versions_dir
from models.bundle import read_model_info, write_model_info
from models.cli import main


@pytest.fixture(scope="module")
def other_model(tiny_bundle: Path, tmp_path_factory) -> Path:
    """A real, valid model bundle that is not the one the indices were built with."""
    other = tmp_path_factory.mktemp("other") / "model"
    shutil.copytree(tiny_bundle, other)
    info = read_model_info(other)
    localization = info.localization.model_copy(update={"bias": info.localization.bias + 1})
    write_model_info(other, info.model_copy(update={"localization": localization}))
    assert read_model_info(other).content_hash != info.content_hash
    return other


def test_a_model_that_does_not_match_the_index_is_refused(flat_index, other_model, tiny_corpus,
                                                          capsys):
    before = flat_index.resolve()
    commands = [
        ["eval", "--index", str(flat_index), "--model", str(other_model), "--corpus",
         str(tiny_corpus), "--quiet"],
        ["index", "add", "--index", str(flat_index), "--corpus", str(tiny_corpus),
         "--model", str(other_model), "--quiet"],
    ]
    for command in commands:
        assert main(command) == 2
        message = one_line_error(capsys.readouterr().err)
        assert "was built with model" in message and str(other_model) in message
    assert flat_index.resolve() == before


def test_a_foreign_folder_is_replaced_only_with_overwrite(tiny_bundle, tiny_corpus, tmp_path,
                                                          capsys):
    corpus = copy_corpus(tiny_corpus, tmp_path / "corpus", keep=8)
    out = tmp_path / "index"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's")
    assert build(tiny_bundle, corpus, out) == 2
    assert "--overwrite" in one_line_error(capsys.readouterr().err)
    assert (out / "notes.txt").is_file() and not out.is_symlink()

    assert build(tiny_bundle, corpus, out, "--overwrite") == 0
    assert out.is_symlink() and (out / "index.json").is_file()
    replaced = [p for p in versions_dir(out).iterdir() if p.name.startswith("replaced-")]
    assert len(replaced) == 1 and (replaced[0] / "notes.txt").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--batch-size", "0"], "--batch-size must be 1 or more"),
    (["--max-failed-share", "1.5"], "--max-failed-share must be between 0 and 1"),
    (["--kind", "ivfpq", "--pq-m", "7"], "must divide the embedding size"),
    (["--threads", "0"], "--threads must be 1 or more"),
])
def test_bad_flags(extra, message, tiny_bundle, tiny_corpus, tmp_path, capsys):
    corpus = copy_corpus(tiny_corpus, tmp_path / "corpus", keep=8)
    assert build(tiny_bundle, corpus, tmp_path / "index", *extra) == 2
    assert message in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "index").exists() and not versions_dir(tmp_path / "index").exists()


def test_missing_and_broken_bundles(flat_index, tiny_bundle, tmp_path, capsys):
    assert build(tiny_bundle, tmp_path / "no-corpus", tmp_path / "index") == 2
    assert "no manifest.jsonl" in one_line_error(capsys.readouterr().err)

    assert main(["index", "remove", "--index", str(tmp_path / "nothing"), "x"]) == 2
    assert "no index bundle" in one_line_error(capsys.readouterr().err)

    broken = tmp_path / "broken"
    shutil.copytree(flat_index.resolve(), broken)
    info = json.loads((broken / "index.json").read_text())
    del info["model_hash"]
    (broken / "index.json").write_text(json.dumps(info))
    assert main(["index", "remove", "--index", str(broken), "pair-00000"]) == 2
    assert "invalid index.json at 'model_hash'" in one_line_error(capsys.readouterr().err)


def test_one_writer_at_a_time(flat_index, tiny_bundle, tiny_corpus, capsys):
    before = flat_index.resolve()
    with (versions_dir(flat_index) / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            assert main(["index", "remove", "--index", str(flat_index), "pair-00000"]) == 2
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    assert "another build, add or remove" in one_line_error(capsys.readouterr().err)
    assert flat_index.resolve() == before

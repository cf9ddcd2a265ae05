"""An interrupted build resumes from its shards, and the bundle being served is never touched.

The interruption is real: a KeyboardInterrupt raised in the middle of the embedding loop (right
after the first shard reached the disk) unwinds the real build, as Ctrl-C would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from index_helpers import copy_corpus

from indexer.build import BuildConfig, build
from indexer.bundle import versions_dir
from indexer.embed import EmbedConfig
from indexer.search import open_index

SHARDS = ".index.staging-*/shard-[0-9][0-9][0-9][0-9][0-9].npz"  # complete shards only


def config(model: Path, corpus: Path, out: Path) -> BuildConfig:
    return BuildConfig(model=model, corpus=corpus, out=out, kind="flat", device="cpu",
                       embed=EmbedConfig(batch_size=8, shard_size=16, progress=False))


def search_works(index_dir: Path, count: int) -> None:
    with open_index(index_dir) as index:
        assert index.count == count
        vectors, rowids = index.vectors("image")
        _, found = index.search("image", np.asarray(vectors[:3]), 3)
        assert np.isin(found, rowids).all()


def test_interrupted_build_resumes_and_the_served_bundle_survives(tiny_bundle, tiny_corpus,
                                                                   tmp_path):
    corpus = copy_corpus(tiny_corpus, tmp_path / "corpus", keep=60)
    out = tmp_path / "index"
    first = build(config(tiny_bundle, copy_corpus(tiny_corpus, tmp_path / "old", keep=20), out))
    served = out.resolve()
    assert first.info.counts["items"] == 20

    shards: list[Path] = []

    def interrupt(path: Path) -> None:
        shards.append(path)
        search_works(out, 20)  # the old bundle answers while the new one is being built
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(config(tiny_bundle, corpus, out), on_shard=interrupt)
    assert len(shards) == 1 and shards[0].is_file()
    assert out.resolve() == served  # not switched
    search_works(out, 20)
    assert [p.name for p in versions_dir(out).iterdir() if p.is_dir()] == [served.name]

    written: list[Path] = []
    report = build(config(tiny_bundle, corpus, out), on_shard=written.append)
    assert report.resumed == 16 and report.info.counts["items"] == 60
    assert len(written) == 3  # the 44 items left, in shards of 16
    assert out.resolve() != served and served.is_dir()  # the previous version is kept
    assert not shards[0].parent.exists()  # the staging folder is gone after success
    search_works(out, 60)

    fresh = build(config(tiny_bundle, corpus, tmp_path / "fresh"))
    for modality in ("image", "audio", "audio_features"):
        resumed = np.load(out / f"{modality}.npy")
        assert np.array_equal(resumed, np.load(fresh.version / f"{modality}.npy"))


def test_old_versions_are_pruned_keeping_the_previous(tiny_bundle, tiny_corpus, tmp_path):
    corpus = copy_corpus(tiny_corpus, tmp_path / "corpus", keep=10)
    out = tmp_path / "index"
    versions = []
    for _ in range(3):
        versions.append(build(config(tiny_bundle, corpus, out)).version)
    kept = sorted(p.name for p in versions_dir(out).iterdir() if p.is_dir())
    assert kept == sorted(v.name for v in versions[1:])
    assert out.resolve() == versions[-1]


def test_a_killed_build_resumes(tiny_bundle, tiny_corpus, tmp_path):
    """SIGKILL (no cleanup at all) in the middle of embedding, then the same command again."""
    out = tmp_path / "index"
    command = [sys.executable, "-m", "models.cli", "index", "build", "--model", str(tiny_bundle),
               "--corpus", str(tiny_corpus), "--out", str(out), "--device", "cpu", "--quiet",
               "--batch-size", "4", "--shard-size", "4"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(SHARDS)):
            assert process.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert not out.exists()  # nothing published
    staged = len(list(tmp_path.glob(SHARDS)))
    report = build(BuildConfig(model=tiny_bundle, corpus=tiny_corpus, out=out, kind="flat",
                               device="cpu", embed=EmbedConfig(batch_size=4, shard_size=4,
                                                               progress=False)))
    assert report.resumed >= 4 * staged and report.resumed >= 4
    assert report.info.counts["items"] == 141

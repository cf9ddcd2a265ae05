"""``avsearch index build --engine ray`` on a real two-node Ray cluster on this machine.

The cluster (``ray start --head`` and a second ``ray start --address``, one CPU each) is
started once for this module and stopped at its end; every build joins it with
``--ray-address``. Everything is real: Ray Data, ONNX Runtime in the actors, FAISS, the files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from index_helpers import append_items, build, copy_corpus, one_line_error
from ray_cluster import RayCluster, free_port, two_node_cluster

from indexer import kinds
from indexer.build import BuildConfig
from indexer.build import build as build_bundle
from indexer.bundle import index_files
from indexer.embed import EmbedConfig
from indexer.ray_config import RayConfig
from indexer.search import open_index
from models.cli import main
from models.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_cluster():
    """Two Ray nodes on loopback; this process (the driver) matches their auth setting."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # no usage poller thread in the driver
        with two_node_cluster(cpus_per_node=1) as cluster:
            yield cluster


def ray_build(cluster: RayCluster, model: Path, corpus: Path, out: Path, *extra: str) -> int:
    return build(model, corpus, out, "--engine", "ray", "--ray-address", cluster.address,
                 *extra)


def stored(index_dir: Path) -> dict[str, np.ndarray]:
    root = index_dir.resolve()
    return {name: np.load(root / f"{name}.npy")
            for name in ("rowids", "image", "audio", "audio_features")}


def eval_json(tmp_path: Path, name: str, model: Path, corpus: Path, index: Path) -> dict:
    out = tmp_path / f"{name}.json"
    assert main(["eval", "--model", str(model), "--corpus", str(corpus), "--index", str(index),
                 "--device", "cpu", "--quiet", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_ray_build_gives_the_local_bundle(ray_cluster, flat_index, tiny_bundle, tiny_corpus,
                                          tmp_path, capsys):
    out = tmp_path / "ray-index"
    assert ray_build(ray_cluster, tiny_bundle, tiny_corpus, out, "--kind", "flat",
                     "--ray-actors", "2", "--batch-size", "16", "--shard-size", "32") == 0
    assert "built an index of" in capsys.readouterr().out
    info = json.loads((out / "index.json").read_text())
    assert info["engine"] == "ray" and info["shards"] == 1
    assert info["provider"] == "CPUExecutionProvider"
    local, remote = stored(flat_index), stored(out)
    for name in ("rowids", "image", "audio", "audio_features"):
        assert np.array_equal(local[name], remote[name]), name  # bit for bit
    with open_index(flat_index) as a, open_index(out) as b:
        assert a.items(a.rowids()) == b.items(b.rowids())

    local_table = eval_json(tmp_path, "local", tiny_bundle, tiny_corpus, flat_index)
    ray_table = eval_json(tmp_path, "ray", tiny_bundle, tiny_corpus, out)
    assert ray_table["ndcg30"] == local_table["ndcg30"]
    assert ray_table["localization"] == local_table["localization"]
    assert ray_table["counts"] == local_table["counts"]


def test_a_killed_worker_loses_no_item(ray_cluster, flat_index, tiny_bundle, tiny_corpus,
                                       tmp_path):
    """The embedding actor's process is killed (SIGKILL) after the first shard: Ray restarts
    it, its batches run again, and the bundle holds every item, as the local build's."""
    killed: list[int] = []
    after_kill: list[Path] = []
    restarted: set[int] = set()

    def on_shard(path: Path) -> None:
        if not killed:
            pids = ray_cluster.pids("_Embedder")
            assert pids, "no embedding actor process found"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed.extend(pids)
        else:
            after_kill.append(path)
            restarted.update(set(ray_cluster.pids("_Embedder")) - set(killed))

    config = BuildConfig(model=tiny_bundle, corpus=tiny_corpus, out=tmp_path / "index",
                         kind="flat", device="cpu", engine="ray",
                         ray=RayConfig(address=ray_cluster.address, actors=1),
                         embed=EmbedConfig(batch_size=2, shard_size=4, progress=False))
    report = build_bundle(config, on_shard=on_shard)
    assert killed and after_kill, "the worker was not killed while the job ran"
    assert restarted, "no embedding actor ran after the kill"
    for pid in killed:
        assert not Path(f"/proc/{pid}").exists()
    assert report.failed == [] and report.changed == len(read_manifest(tiny_corpus))
    local, remote = stored(flat_index), stored(tmp_path / "index")
    for name in ("rowids", "image", "audio", "audio_features"):
        assert np.array_equal(local[name], remote[name]), name


def index_parts(index_dir: Path) -> dict[str, list[faiss.Index]]:
    """Each modality's FAISS file(s) of a bundle, in shard order."""
    root = index_dir.resolve()
    shards = json.loads((root / "index.json").read_text())["shards"]
    return {m: [kinds.read_index(root / name) for name in index_files(m, shards)]
            for m in ("image", "audio", "audio_features")}


def assert_same_indices(local_dir: Path, ray_dir: Path) -> None:
    """The Ray-built bundle's index files against the local build's: every stored vector (both
    modalities) as a query, k=10, gives the same scores and ids from every file; and the files
    serialise to the same bytes."""
    params = kinds.IndexParams(**json.loads((local_dir / "index.json").read_text())["index"])
    vectors = stored(local_dir)
    queries = np.concatenate([vectors["image"], vectors["audio"]])
    local, remote = index_parts(local_dir), index_parts(ray_dir)
    for modality in ("image", "audio", "audio_features"):
        assert len(remote[modality]) == len(local[modality])
        for number, (want, got) in enumerate(zip(local[modality], remote[modality],
                                                 strict=True)):
            where = f"{modality} file {number}"
            assert got.ntotal == want.ntotal > 0, where
            expected = kinds.search(want, params, queries, 10)
            answers = kinds.search(got, params, queries, 10)
            assert np.array_equal(answers[1], expected[1]), where
            assert np.array_equal(answers[0], expected[0]), where
            assert np.array_equal(faiss.serialize_index(got), faiss.serialize_index(want)), where


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_ray_index_shards_equal_the_local_shards(ray_cluster, kind, tiny_bundle, tiny_corpus,
                                                 tmp_path):
    """``--shards 2``: the quantiser trained once in the driver, each shard filled in a task."""
    assert build(tiny_bundle, tiny_corpus, tmp_path / "local", "--kind", kind,
                 "--shards", "2") == 0
    assert ray_build(ray_cluster, tiny_bundle, tiny_corpus, tmp_path / "ray", "--kind", kind,
                     "--shards", "2", "--batch-size", "64") == 0
    info = json.loads((tmp_path / "ray" / "index.json").read_text())
    assert info["engine"] == "ray" and info["shards"] == 2
    assert info["index"] == json.loads((tmp_path / "local" / "index.json").read_text())["index"]
    assert_same_indices(tmp_path / "local", tmp_path / "ray")


def test_ray_ivfpq_encoded_in_tasks_equals_the_local_index(ray_cluster, tiny_bundle,
                                                           tiny_corpus, tmp_path):
    """``--kind ivfpq`` unsharded: encoded in 2 tasks (the cluster's 2 CPUs) and merged into
    the trained template in row order: the same inverted lists, in the same order, as the
    local build's one ``add``: the same bytes."""
    small = ("--kind", "ivfpq", "--nlist", "4", "--pq-m", "16")
    assert build(tiny_bundle, tiny_corpus, tmp_path / "local", *small) == 0
    assert ray_build(ray_cluster, tiny_bundle, tiny_corpus, tmp_path / "ray", *small,
                     "--batch-size", "64") == 0
    info = json.loads((tmp_path / "ray" / "index.json").read_text())
    assert info["engine"] == "ray" and info["index"]["nlist"] == 4
    from indexer.ray_index import encoder_count

    assert encoder_count(info["counts"]["items"], 2) == 2  # the merge path, not the driver's
    assert_same_indices(tmp_path / "local", tmp_path / "ray")
    local, remote = index_parts(tmp_path / "local"), index_parts(tmp_path / "ray")
    for modality in ("image", "audio", "audio_features"):
        want, got = (faiss.extract_index_ivf(i[0]).invlists for i in (local[modality],
                                                                         remote[modality]))
        for number in range(4):
            assert got.list_size(number) == want.list_size(number)
            listed = [faiss.rev_swig_ptr(lists.get_ids(number), lists.list_size(number)).copy()
                      for lists in (want, got)]
            assert np.array_equal(*listed), f"{modality} list {number}"


@pytest.fixture
def broken_corpus(tiny_corpus: Path, tmp_path: Path) -> Path:
    corpus = copy_corpus(tiny_corpus, tmp_path / "broken", keep=12)
    good = read_manifest(corpus)[0]
    (corpus / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image at all")
    append_items(
        corpus,
        {"id": "bad-corrupt", "image": "images/corrupt.png", "audio": good.audio},
        {"id": "bad-missing", "image": good.image, "audio": "audio/not-there.wav"},
    )
    return corpus


def test_bad_items_are_reported_as_in_the_local_build(ray_cluster, broken_corpus, tiny_bundle,
                                                      tmp_path, capsys):
    assert build(tiny_bundle, broken_corpus, tmp_path / "local") == 0
    local_out = capsys.readouterr().out
    assert ray_build(ray_cluster, tiny_bundle, broken_corpus, tmp_path / "ray") == 0
    ray_out = capsys.readouterr().out
    local = json.loads((tmp_path / "local" / "index.json").read_text())
    remote = json.loads((tmp_path / "ray" / "index.json").read_text())
    assert [f["id"] for f in remote["failed"]] == ["bad-corrupt", "bad-missing"]
    assert remote["failed"] == local["failed"]
    assert remote["counts"] == local["counts"] == {"items": 12, "image": 12, "audio": 12,
                                                   "audio_features": 12}

    def failure_lines(text: str) -> list[str]:
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if "items failed" in line)
        return lines[start:start + 3]

    assert failure_lines(ray_out) == failure_lines(local_out)
    assert failure_lines(ray_out)[0] == "2 items failed and were skipped:"


def test_an_interrupted_ray_build_resumes_and_the_old_bundle_serves(ray_cluster, tiny_bundle,
                                                                    tiny_corpus, tmp_path):
    corpus = copy_corpus(tiny_corpus, tmp_path / "corpus", keep=40)
    out = tmp_path / "index"
    first = copy_corpus(tiny_corpus, tmp_path / "first", keep=10)
    assert build(tiny_bundle, first, out, "--kind", "flat") == 0
    serving = out.resolve()
    seen: list[Path] = []

    def interrupt(path: Path) -> None:
        seen.append(path)
        if len(seen) == 2:
            raise KeyboardInterrupt

    config = BuildConfig(model=tiny_bundle, corpus=corpus, out=out, kind="flat", device="cpu",
                         engine="ray", ray=RayConfig(address=ray_cluster.address, actors=1),
                         embed=EmbedConfig(batch_size=4, shard_size=8, progress=False))
    with pytest.raises(KeyboardInterrupt):
        build_bundle(config, on_shard=interrupt)
    assert out.resolve() == serving  # the old bundle is untouched and still opens
    with open_index(out) as index:
        assert index.count == 10
    report = build_bundle(config)
    assert report.resumed >= 16  # at least the two shards seen before the interruption
    assert report.changed == 40 and out.resolve() != serving
    with open_index(out) as index:
        assert index.count == 40


def test_without_an_address_the_build_starts_a_local_ray(tiny_bundle, tiny_corpus, tmp_path,
                                                         monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # no token file written to ~/.ray
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray_tmp = Path(tempfile.mkdtemp(prefix="avs-ray-", dir="/tmp"))  # short: socket paths
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))  # not /tmp/ray
    corpus = copy_corpus(tiny_corpus, tmp_path / "corpus", keep=16)
    assert build(tiny_bundle, corpus, tmp_path / "local") == 0
    try:
        assert build(tiny_bundle, corpus, tmp_path / "ray", "--engine", "ray") == 0
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert json.loads((tmp_path / "ray" / "index.json").read_text())["engine"] == "ray"
    local, remote = stored(tmp_path / "local"), stored(tmp_path / "ray")
    for name in ("rowids", "image", "audio", "audio_features"):
        assert np.array_equal(local[name], remote[name]), name
    import ray

    assert not ray.is_initialized()  # the job's own Ray was stopped


def test_ray_errors_are_one_line(tiny_bundle, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "index"
    started = time.monotonic()
    port = free_port()  # nothing listens there
    assert build(tiny_bundle, tiny_corpus, out, "--engine", "ray", "--ray-address",
                 f"127.0.0.1:{port}") == 2
    message = one_line_error(capsys.readouterr().err)
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in message
    assert time.monotonic() - started < 30
    assert build(tiny_bundle, tiny_corpus, out, "--ray-actors", "2") == 2
    assert "need --engine ray" in one_line_error(capsys.readouterr().err)
    assert not out.exists()


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_without_ray_installed_the_ray_engine_is_a_one_line_error(tiny_bundle, tiny_corpus,
                                                                  tmp_path):
    argv = ["index", "build", "--model", str(tiny_bundle), "--corpus", str(tiny_corpus),
            "--out", str(tmp_path / "index"), "--engine", "ray", "--quiet"]
    done = _python("import sys; sys.modules['ray'] = None  # as if not installed\n"
                   f"from models.cli import main; sys.exit(main({argv!r}))")
    assert done.returncode == 2, done.stderr
    message = one_line_error(done.stderr)
    assert "--engine ray needs Ray" in message and "avsearch[ray]" in message


def test_the_local_build_and_the_service_never_import_ray(tiny_bundle, tiny_corpus, tmp_path):
    argv = ["index", "build", "--model", str(tiny_bundle), "--corpus", str(tiny_corpus),
            "--out", str(tmp_path / "index"), "--device", "cpu", "--quiet", "--shards", "2"]
    done = _python(f"import sys\nfrom models.cli import main\nassert main({argv!r}) == 0\n"
                   "import service.app, service.engine\n"
                   "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                   "('ray', 'torch')))")
    assert done.returncode == 0, done.stderr
    assert "in 2 shards" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"

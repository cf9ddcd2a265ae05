"""Decoding and embedding a corpus on a Ray cluster (``avsearch index build --engine ray``).

The job is one Ray Data pipeline over the entries still to embed:

    entries ──► decode (CPU tasks) ──► embed (actor pool: one ONNX Runtime session an actor,
    CUDA actors where the cluster has GPUs) ──► write shards (tasks) ──► the driver's progress

The shard writers put ``shard-NNNNN.npz`` files into the build's staging folder, exactly the
files the local build writes (``indexer.embed``), so resuming, gathering, bad items and the
bundle are the local build's code; the FAISS index stage runs in Ray tasks too
(``indexer.ray_index``). The staging folder
must therefore be on storage every node sees (as must the corpus and the model bundle).

Faults: a task whose worker dies is run again by Ray (Ray's default: 3 retries); an actor whose
process dies is restarted and its unfinished batches are sent again (Ray Data's default for
actor pools: restarts and task retries without limit). A shard is
written under a temporary name and renamed, and its number is the run's first free number plus
the smallest row id it holds, so a retried writer rewrites the same file with the same rows and
concurrent writers never collide. An interrupted job leaves the shards written so far; the rerun
embeds only the rest. Only this module and ``indexer.ray_index`` import Ray.
"""

from __future__ import annotations

import logging
import math
import pickle
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import ray
import ray.data
from tqdm import tqdm

from indexer.embed import (
    EmbedConfig,
    Embedded,
    embed_batch,
    gather,
    next_shard_number,
    read_staged,
    runtime_modalities,
    write_shard,
)
from indexer.ray_config import RayConfig
from indexer.store import Entry
from models.errors import BundleError, CorpusError, MediaError
from models.item_media import InputSpec, load_item
from models.runtime import ModelRuntime

log = logging.getLogger(__name__)

DECODE_CPUS = 0.5
"""Logical CPUs a decoding task asks for. CPU actors share what the cluster has left after one
decoding and one writing task a node (``_pool``), so that a pool as large as the cluster cannot
starve the decoders."""
WRITE_CPUS = 0.1  # writing a shard is short and mostly I/O


def embed_on_ray(
    config: RayConfig,
    model_dir: Path,
    device: str,
    corpus_dir: Path,
    entries: Sequence[Entry],
    staging: Path,
    embed: EmbedConfig,
    runtime: ModelRuntime,
    on_shard: Callable[[Path], None] | None = None,
) -> tuple[Embedded, str]:
    """Embed ``entries`` on Ray into shards under ``staging`` (resuming), then gather them.

    Returns the embeddings and the ONNX Runtime provider(s) the actors used.
    """
    dim, modalities = runtime.info.embed_dim, runtime_modalities(runtime)
    spec = InputSpec(runtime.image_size, runtime.sample_rate, runtime.window_s)
    done = read_staged(staging, dim, modalities).rowids
    planned = np.asarray([entry.rowid for entry in entries], dtype=np.int64)
    todo = [e for e, seen in zip(entries, np.isin(planned, done), strict=True) if not seen]
    resumed = len(entries) - len(todo)
    providers: set[str] = set()
    if todo:
        with ray_session(config, embed.progress):
            providers = _run(config, Path(model_dir).resolve(), device,
                             Path(corpus_dir).resolve(), todo, len(entries), resumed,
                             Path(staging).resolve(), embed, spec, on_shard)
        _check_staged(staging, dim, modalities, todo)
    provider = ",".join(sorted(providers)) or runtime.provider
    return gather(staging, entries, dim, modalities, resumed), provider


def _check_staged(staging: Path, dim: int, modalities: Sequence[str],
                  todo: Sequence[Entry]) -> None:
    """Every entry the job ran must be in a shard here (embedded or failed): shards written on
    a node that does not share the staging folder would otherwise be lost without a word."""
    staged = read_staged(staging, dim, modalities)
    found = np.union1d(staged.rowids, np.fromiter(staged.failed, np.int64))
    missing = np.setdiff1d([entry.rowid for entry in todo], found)
    if len(missing):
        raise BundleError(f"{len(missing)} of {len(todo)} items were embedded on the cluster but "
                          f"their shards are not in {staging}: it must be on storage that every "
                          "Ray node sees at the same path (docs/scale.md)")


# ---------------------------------------------------------------------------- the cluster


@contextmanager
def ray_session(config: RayConfig, progress: bool) -> Iterator[None]:
    """Join the cluster at ``config.address``, or start a private local Ray; leave it after."""
    if ray.is_initialized():  # a caller that manages Ray itself (a notebook, a script)
        yield
        return
    quiet = {"logging_level": logging.WARNING, "log_to_driver": progress,
             "include_dashboard": False}
    if config.address:
        _check_reachable(config.address)
        try:
            ray.init(address=config.address, **quiet)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"could not join the Ray cluster at {config.address}: "
                              f"{first}") from None
    else:
        ray.init(address="local", **quiet)
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds with one line on a wrong address (Ray itself retries for a minute)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        raise BundleError(f"--ray-address {address!r}: give the cluster's HOST:PORT (the "
                          "address `ray start --head` prints)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BundleError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; "
                          "is `ray start --head` running there?") from None


def _pool(config: RayConfig, device: str) -> tuple[int, dict]:
    """The actor pool's size and each actor's resources: one GPU each where the cluster has
    GPUs (unless ``--device cpu``), else a share of the CPUs that leaves room to decode."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 0))
    if device == "cuda" and not gpus:
        raise BundleError("device 'cuda' asked for, but the Ray cluster has no GPU")
    if gpus and device != "cpu":
        actors = config.actors or gpus
        if actors > gpus:
            raise BundleError(f"--ray-actors {actors}: the cluster has {gpus} GPUs")
        return actors, {"num_gpus": 1, "num_cpus": 1, "device": "cuda"}
    actors = config.actors or 1
    # Leave a decoder and a writer room on every node: then, however Ray places the actors,
    # some node can still run them (else every actor waits for input that never comes).
    nodes = max(1, sum(1 for node in ray.nodes() if node.get("Alive")))
    share = (cpus - nodes * (DECODE_CPUS + WRITE_CPUS)) / actors
    if share < 0.2:
        raise BundleError(f"--ray-actors {actors}: that many CPU actors do not fit the "
                          f"cluster's {cpus:g} CPUs on {nodes} nodes beside the decoding")
    return actors, {"num_gpus": 0, "num_cpus": min(1.0, share), "device": "cpu"}


# ---------------------------------------------------------------------------- the pipeline


def _run(config: RayConfig, model_dir: Path, device: str, corpus_dir: Path,
         todo: Sequence[Entry], total: int, resumed: int, staging: Path, embed: EmbedConfig,
         spec: InputSpec, on_shard: Callable[[Path], None] | None) -> set[str]:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours below counts items, not blocks
    context.print_on_execution_start = False
    actors, actor = _pool(config, device)
    rows = [{"rowid": entry.rowid, "item": pickle.dumps(entry.item)} for entry in todo]
    blocks = max(1, math.ceil(len(rows) / embed.batch_size))
    first_number = next_shard_number(staging)
    dataset = (
        ray.data.from_items(rows, override_num_blocks=blocks)
        .map_batches(_decode_batch, fn_kwargs={"corpus_dir": str(corpus_dir), "spec": spec},
                     batch_size=embed.batch_size, batch_format="numpy", num_cpus=DECODE_CPUS)
        .map_batches(_Embedder, fn_constructor_kwargs={
                         "model_dir": str(model_dir), "device": actor["device"],
                         "threads": max(1, int(actor["num_cpus"]))},
                     batch_size=embed.batch_size, batch_format="numpy",
                     compute=ray.data.ActorPoolStrategy(size=actors),
                     num_cpus=actor["num_cpus"], num_gpus=actor["num_gpus"])
        .map_batches(_write_batch, fn_kwargs={"staging": str(staging),
                                              "first_number": first_number},
                     batch_size=embed.shard_size, batch_format="numpy", num_cpus=WRITE_CPUS)
    )
    providers: set[str] = set()
    with tqdm(total=total, initial=resumed, desc=f"embedding on Ray ({actors} actors)",
              unit="item", disable=not embed.progress, dynamic_ncols=True) as bar:
        for row in dataset.iter_rows():
            providers.update(p for p in str(row["providers"]).split(",") if p)
            bar.update(int(row["items"]))
            if on_shard:
                on_shard(Path(str(row["shard"])))
    return providers


def _decode_batch(batch: dict[str, np.ndarray], corpus_dir: str,
                  spec: InputSpec) -> dict[str, np.ndarray]:
    """Decode a batch of items (a CPU task); a bad item becomes a row with its reason and zero
    media, so it travels with the others and is recorded in the shard like the local build's."""
    frames, waves, errors = [], [], []
    for blob in batch["item"]:
        try:
            frame, wave = load_item(corpus_dir, pickle.loads(blob), spec)
            error = ""
        except (MediaError, CorpusError) as exc:
            frame = wave = None
            error = str(exc)
        frames.append(frame)
        waves.append(wave)
        errors.append(error)
    shape = next((f.shape for f in frames if f is not None), (spec.image_size,) * 2 + (3,))
    length = next((len(w) for w in waves if w is not None),
                  round(spec.sample_rate * spec.window_s))
    return {
        "rowid": np.asarray(batch["rowid"], dtype=np.int64),
        "frame": np.stack([f if f is not None else np.zeros(shape, np.uint8) for f in frames]),
        "wave": np.stack([w.astype(np.float32) if w is not None else np.zeros(length, np.float32)
                          for w in waves]),
        "error": np.asarray(errors, dtype=object),
    }


class _Embedder:
    """One ONNX Runtime session of the model bundle, kept for the actor's life."""

    def __init__(self, model_dir: str, device: str, threads: int) -> None:
        self.runtime = ModelRuntime(model_dir, device=device, intra_op_threads=threads)
        self.dim = self.runtime.info.embed_dim
        self.modalities = runtime_modalities(self.runtime)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = np.asarray(batch["error"], dtype=object)
        good = np.flatnonzero(errors == "")
        vectors = {m: np.zeros((len(errors), self.dim), np.float32) for m in self.modalities}
        if len(good):
            embedded = embed_batch(self.runtime, batch["frame"][good],
                                   batch["wave"][good].astype(np.float32))
            for m in self.modalities:
                vectors[m][good] = embedded[m]
        return {"rowid": batch["rowid"], **{f"vectors_{m}": v for m, v in vectors.items()},
                "error": errors,
                "provider": np.asarray([self.runtime.provider] * len(errors), dtype=object)}


def _write_batch(batch: dict[str, np.ndarray], staging: str,
                 first_number: int) -> dict[str, np.ndarray]:
    """Write one shard of embeddings and failures (a task); one row saying what it wrote."""
    rowids = np.asarray(batch["rowid"], dtype=np.int64)
    errors = np.asarray(batch["error"], dtype=object)
    good = errors == ""
    failed = [(int(r), str(e)) for r, e in zip(rowids[~good], errors[~good], strict=True)]
    number = first_number + int(rowids.min())
    vectors = {key.removeprefix("vectors_"): np.asarray(value, np.float32)[good]
               for key, value in batch.items() if key.startswith("vectors_")}
    path = write_shard(Path(staging), number, rowids[good], vectors, failed)
    providers = sorted({str(p) for p in np.asarray(batch["provider"], dtype=object)[good]})
    return {"shard": np.asarray([str(path)], dtype=object),
            "items": np.asarray([len(rowids)], dtype=np.int64),
            "providers": np.asarray([",".join(providers)], dtype=object)}

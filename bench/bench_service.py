"""The search service under load: requests/s, latency percentiles, errors and server memory.

Prepares (or reuses, under ``--cache``) an index of ``--items`` items built with the real
``avsearch index build`` from a corpus whose manifest repeats the media of ``--corpus`` (the demo
AV-digits corpus) under unique ids; the media are hard-linked (or copied) into the bench corpus,
as media paths may not leave their corpus. Query clips (1 s mp4) come from a small corpus made
by ``avsearch corpus digits --clips``.

Starts ``avsearch serve`` as a separate process on a free loopback port (settings through
``AVSEARCH_*`` variables; unset ones keep the service defaults; access log off), waits for
``/readyz``, then drives ``POST /v1/search`` from this process (httpx, asyncio, closed loop: each
of C clients sends its next query when the last is answered) for each query kind (WAV, PNG, MP4;
uploads rotate through real files) and each C. A cell has a warm-up, then runs ``--seconds`` or
``--max-requests``, whichever ends first. Errors: non-200 answers and exceptions. Memory: the
server's VmRSS after each cell and VmHWM (peak RSS since it started). Prints one Markdown table
and whether issue 4's goals are met (C=8: p99 <= 50 ms for audio and image, <= 100 ms for clips;
zero errors), and each other kind's p50 and p99 as a ratio to the image queries' of the same run
(the host's noise moves both alike); exits non-zero only when the bench itself fails.

Usage: python bench/bench_service.py [--items 100000] [--cache out/bench-service]
           [--seconds 10] [--max-requests 2000] [--concurrency 1,8,32] [--kinds audio,image,clip]
           [--workers N] [--onnx-threads N] [--faiss-threads N] [--max-queue N] [--expand N]
           [--omp-threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
AVSEARCH = str(Path(sys.executable).with_name("avsearch"))
GOAL_P99_MS = {"audio": 50.0, "image": 50.0, "clip": 100.0}
GOAL_CONCURRENCY = 8
MEDIA_KEYS = ("image", "audio", "video")
SETTINGS = ("processes", "workers", "onnx_threads", "faiss_threads", "max_queue", "expand")


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def prepare_corpus(source: Path, out: Path, items: int) -> None:
    """``out``/manifest.jsonl: ``items`` entries cycling through ``source``'s, ids made unique."""
    entries = [json.loads(line) for line in (source / "manifest.jsonl").read_text().splitlines()
               if line.strip()]
    folders = {e[key].split("/")[0] for e in entries for key in MEDIA_KEYS if key in e}
    out.mkdir(parents=True, exist_ok=True)
    for folder in sorted(folders):
        if not (out / folder).exists():
            shutil.copytree(source / folder, out / folder, copy_function=_link_or_copy)
    with open(out / "manifest.jsonl.tmp", "w") as f:
        for i, entry in zip(range(items), itertools.cycle(entries), strict=False):
            f.write(json.dumps({**entry, "id": f"bench-{i:06d}", "copy_of": entry["id"]}) + "\n")
    os.replace(out / "manifest.jsonl.tmp", out / "manifest.jsonl")


def prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    """The index bundle of ``args.items`` items and the folder of query clips (built if absent)."""
    cache = Path(args.cache)
    corpus, index = cache / f"corpus-{args.items}", cache / f"index-{args.items}"
    clips = cache / "clips"
    if args.corpus is None:
        args.corpus = str(cache / "demo" / "corpus")
        if not (Path(args.corpus) / "manifest.jsonl").is_file():
            run([AVSEARCH, "demo", "--no-serve", "--out", str(cache / "demo")])
    if not (clips / "manifest.jsonl").is_file():
        run([AVSEARCH, "corpus", "digits", "--source", args.data, "--out", str(clips),
             "--split", "test", "--clips", "40", "--max-images", "200", "--max-takes", "2",
             "--no-progress", "--overwrite"])
    if (index / "index.json").is_file():
        print(f"reusing the index {index}", flush=True)
        return index, clips
    prepare_corpus(Path(args.corpus), corpus, args.items)
    print(f"building the index of {args.items:,} items at {index} ...", flush=True)
    began = time.perf_counter()
    run([AVSEARCH, "index", "build", "--model", args.model, "--corpus", str(corpus),
         "--out", str(index), "--quiet"])
    print(f"index built in {time.perf_counter() - began:.0f} s", flush=True)
    return index, clips


def run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def uploads(corpus: Path, clips: Path, count: int = 32) -> dict[str, list[tuple[str, bytes]]]:
    """Up to ``count`` real files a kind: WAV sounds, PNG images, MP4 clips."""
    def read(folder: Path, pattern: str) -> list[tuple[str, bytes]]:
        files = sorted(folder.glob(pattern))
        return [(p.name, p.read_bytes()) for p in files[:: max(1, len(files) // count)][:count]]

    found = {"audio": read(corpus / "audio", "*.wav"), "image": read(corpus / "images", "*.png"),
             "clip": read(clips / "clips", "*.mp4")}
    for kind, files in found.items():
        if not files:
            raise SystemExit(f"no {kind} files to upload")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (a multi-process server's workers), Linux."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            children = []
        todo += [int(child) for child in children]
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) summed over a process and its descendants, in kB (Linux)."""
    total = {"VmRSS": 0, "VmHWM": 0}
    for member in process_tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        for name, _, value in (line.partition(":") for line in lines):
            if name in total:
                total[name] += int(value.split()[0])
    return total


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time used by a process and its descendants (Linux), or by this one."""
    if pid is None:
        return os.times().user + os.times().system
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def start_server(args: argparse.Namespace, index: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ)
    for name in SETTINGS:
        if getattr(args, name) is not None:
            env[f"AVSEARCH_{name.upper()}"] = str(getattr(args, name))
    if args.omp_threads is not None:  # OpenMP's default in threads that never set their own
        env["OMP_NUM_THREADS"] = str(args.omp_threads)
    command = [AVSEARCH, "serve", "--model", args.model, "--index", str(index),
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def wait_ready(server: subprocess.Popen, base: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} before it was ready")
        try:
            answer = httpx.get(f"{base}/readyz", timeout=2.0)
            if answer.status_code == 200:
                return answer.json()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server was not ready after {timeout:.0f} s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@dataclass
class Cell:
    kind: str
    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    first_error: str
    server_ms: dict[str, float]  # median decode/embed/search as the server timed them
    server_cpu: float  # cores busy on average: the server's, and this load generator's
    client_cpu: float
    rss_kb: int
    peak_kb: int

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


BOUNDARY = "avsearch-bench-boundary"
HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def multipart(name: str, data: bytes, mime: str) -> bytes:
    """The form body ``file`` + ``k=10``, encoded once (the load generator's CPU is the
    server's too on a small machine)."""
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="k"\r\n\r\n10\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"'
            f"\r\nContent-Type: {mime}\r\n\r\n")
    return head.encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


async def load(base: str, kind: str, files: list[tuple[str, bytes]], concurrency: int,
               seconds: float, max_requests: int, warmup: int, pid: int) -> Cell:
    """A closed-loop run: ``concurrency`` clients, each sending its next query when answered."""
    mime = {"audio": "audio/wav", "image": "image/png", "clip": "video/mp4"}[kind]
    rotation = itertools.cycle([multipart(name, data, mime) for name, data in files])
    latencies: list[float] = []
    stages: dict[str, list[float]] = {"decode": [], "embed": [], "search": []}
    errors: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as client:

        async def one(record: bool) -> None:
            body = next(rotation)
            began = time.perf_counter()
            try:
                answer = await client.post("/v1/search", content=body, headers=HEADERS)
            except httpx.HTTPError as exc:
                if record:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return
            elapsed = (time.perf_counter() - began) * 1000
            if not record:
                return
            if answer.status_code != 200:
                errors.append(f"{answer.status_code}: {answer.text[:200]}")
                return
            latencies.append(elapsed)
            timing = answer.json()["timing"]
            for stage, values in stages.items():
                values.append(timing[f"{stage}_ms"])

        await asyncio.gather(*(one(False) for _ in range(max(warmup, concurrency))))
        sent = 0
        deadline = time.perf_counter() + seconds

        async def client_loop() -> None:
            nonlocal sent
            while sent < max_requests and time.perf_counter() < deadline:
                sent += 1
                await one(True)

        began, cpu_before, own_before = time.perf_counter(), cpu_seconds(pid), cpu_seconds()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        server_cpu = (cpu_seconds(pid) - cpu_before) / elapsed
        client_cpu = (cpu_seconds() - own_before) / elapsed
    memory = memory_kb(pid)
    medians = {s: float(np.median(v)) if v else float("nan") for s, v in stages.items()}
    return Cell(kind, concurrency, sent, elapsed, latencies, len(errors),
                errors[0] if errors else "", medians, server_cpu, client_cpu,
                memory["VmRSS"], memory["VmHWM"])


def table(cells: list[Cell]) -> str:
    lines = ["| query | C | requests | req/s | p50 ms | p90 ms | p99 ms | errors "
             "| server decode/embed/search p50 ms | server / bench CPU | RSS MB | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|"]
    for c in cells:
        s = c.server_ms
        lines.append(
            f"| {c.kind} | {c.concurrency} | {c.requests:,} | {c.requests / c.seconds:,.1f} "
            f"| {c.pct(50):.1f} | {c.pct(90):.1f} | {c.pct(99):.1f} | {c.errors} "
            f"| {s['decode']:.1f} / {s['embed']:.1f} / {s['search']:.1f} "
            f"| {c.server_cpu:.2f} / {c.client_cpu:.2f} "
            f"| {c.rss_kb / 1024:,.0f} | {c.peak_kb / 1024:,.0f} |")
    return "\n".join(lines)


def verdict(cells: list[Cell]) -> list[str]:
    lines = []
    for c in cells:
        if c.concurrency == GOAL_CONCURRENCY:
            goal = GOAL_P99_MS[c.kind]
            met = "met" if c.pct(99) <= goal else "NOT met"
            lines.append(f"- {c.kind}, C={c.concurrency}: p99 {c.pct(99):.1f} ms "
                         f"(goal <= {goal:.0f} ms): {met}")
    lines += against_image(cells)
    errors = sum(c.errors for c in cells)
    lines.append(f"- errors: {errors} (goal 0): {'met' if errors == 0 else 'NOT met'}")
    lines += [f"  - first error, {c.kind} C={c.concurrency}: {c.first_error}"
              for c in cells if c.errors]
    return lines


def against_image(cells: list[Cell]) -> list[str]:
    """Each other kind's latency as a ratio to the image queries' at the same concurrency: the
    host's noise moves both cells of a run alike, so the ratio says what the kind itself costs
    (the audio graph's speed ensemble, say) where an absolute p99 drifts by several ms."""
    images = {c.concurrency: c for c in cells if c.kind == "image"}
    return [f"- {c.kind} / image at C={c.concurrency} (same run): p50 "
            f"{c.pct(50) / images[c.concurrency].pct(50):.2f}x, p99 "
            f"{c.pct(99) / images[c.concurrency].pct(99):.2f}x"
            for c in cells if c.kind != "image" and c.concurrency in images
            and c.requests and images[c.concurrency].requests]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="indexed items (100000)")
    parser.add_argument("--cache", default="out/bench-service", help="corpus and index cache")
    parser.add_argument("--corpus", help="corpus whose media to reuse (default: the demo's, "
                        "built by `avsearch demo --no-serve` into CACHE/demo when absent)")
    parser.add_argument("--data", default="data/sample", help="MNIST+FSDD (query clips)")
    parser.add_argument("--model", default="models/pretrained/digits")
    parser.add_argument("--seconds", type=float, default=10.0, help="longest run of a cell")
    parser.add_argument("--max-requests", type=int, default=2000, help="most requests a cell")
    parser.add_argument("--warmup", type=int, default=16, help="unrecorded requests a cell")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--kinds", default="audio,image,clip")
    for name in SETTINGS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int,
                            help=f"AVSEARCH_{name.upper()} (default: the service's)")
    parser.add_argument("--omp-threads", type=int,
                        help="OMP_NUM_THREADS of the server (default: unset)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: stop the server
    os.chdir(ROOT)
    index, clips = prepare(args)
    files = uploads(Path(args.corpus), clips)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(args, index, port)
    try:
        ready = wait_ready(server, base)
        chosen = {n: getattr(args, n) if getattr(args, n) is not None else "default"
                  for n in (*SETTINGS, "omp_threads")} | {"log_level": "warning"}
        print(f"\n# machine: {os.cpu_count()} CPUs, {platform.platform()}, "
              f"{platform.processor() or platform.machine()}, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"# server: {ready['index']['items']:,} items ({ready['index']['kind']} index), "
              f"model {ready['model']['preset']} on {ready['model']['provider']}; settings "
              + ", ".join(f"{k}={v}" for k, v in chosen.items()))
        print(f"# load: {args.seconds:g} s or {args.max_requests} requests a cell, "
              f"{args.warmup} warm-up requests, k=10, closed loop\n", flush=True)
        cells = []
        for kind in args.kinds.split(","):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                cells.append(asyncio.run(load(base, kind, files[kind], concurrency,
                                              args.seconds, args.max_requests, args.warmup,
                                              server.pid)))
                print(table(cells[-1:]).splitlines()[-1], flush=True)
        print("\n" + table(cells) + "\n")
        print("\n".join(verdict(cells)))
    finally:
        stop_server(server)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

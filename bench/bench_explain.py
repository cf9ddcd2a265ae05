"""What ``explain=true`` adds to a search: latency at k=10, explained against plain, one run.

Serves the demo index (``avsearch demo --no-serve`` into ``--out`` when absent) with
``avsearch serve`` in a separate process on loopback, then sends one query at a time, plain and
explained alternately (so drift on a shared machine hits both alike), for im2aud (2x2 scenes as
the query: one heat map per hit from the query's grid) and aud2im (sounds as the query: the ten
hit images decoded and run through the image tower in one batch). Prints p50/p90 of each and the
difference of the medians, as a Markdown table.

Usage: python bench/bench_explain.py [--requests 200] [--out out/bench-explain]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from bench_service import AVSEARCH, ROOT, free_port, run, stop_server, wait_ready

K = 10


def serve(model: str, index: Path, port: int) -> subprocess.Popen:
    command = [AVSEARCH, "serve", "--model", model, "--index", str(index), "--host",
               "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(command, cwd=ROOT, start_new_session=True)


def queries(corpus: Path, kind: str, count: int = 16) -> list[tuple[str, bytes]]:
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    scenes = [row for row in rows if row.get("kind") == "scene"][:count]
    key = "image" if kind == "im2aud" else "audio"
    return [(Path(row[key]).name, (corpus / row[key]).read_bytes()) for row in scenes]


def measure(client: httpx.Client, files: list[tuple[str, bytes]], direction: str,
            requests: int) -> dict[bool, list[float]]:
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(requests):
        name, data = files[i % len(files)]
        for explain in (False, True):
            began = time.perf_counter()
            answer = client.post("/v1/search", files={"file": (name, data)},
                                 data={"direction": direction, "k": str(K),
                                       "explain": str(explain).lower()})
            elapsed = (time.perf_counter() - began) * 1000
            if answer.status_code != 200:
                raise SystemExit(f"{direction} explain={explain}: {answer.status_code} "
                                 f"{answer.text[:200]}")
            times[explain].append(elapsed)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="queries of each kind")
    parser.add_argument("--out", default="out/bench-explain", help="the demo corpus and index")
    parser.add_argument("--model", default="models/pretrained/digits")
    args = parser.parse_args()
    out = ROOT / args.out
    if not (out / "index" / "index.json").is_file():
        run([AVSEARCH, "demo", "--no-serve", "--out", str(out)])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = serve(args.model, out / "index", port)
    try:
        ready = wait_ready(server, base)
        print(f"# {ready['index']['items']:,} items ({ready['index']['kind']}), k={K}, one query "
              f"at a time, {args.requests} of each; machine: {os.cpu_count()} CPUs, "
              f"{platform.platform()}", flush=True)
        lines = ["| direction | plain p50 ms | plain p90 ms | explained p50 ms | explained p90 ms "
                 "| added (p50) ms |", "|---|---:|---:|---:|---:|---:|"]
        with httpx.Client(base_url=base, timeout=60) as client:
            for direction in ("im2aud", "aud2im"):
                files = queries(out / "corpus", direction)
                measure(client, files, direction, 10)  # warm-up
                times = measure(client, files, direction, args.requests)
                p = {e: (statistics.median(t), statistics.quantiles(t, n=10)[-1])
                     for e, t in times.items()}
                lines.append(f"| {direction} | {p[False][0]:.1f} | {p[False][1]:.1f} "
                             f"| {p[True][0]:.1f} | {p[True][1]:.1f} "
                             f"| {p[True][0] - p[False][0]:.1f} |")
        print("\n".join(lines))
    finally:
        stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())

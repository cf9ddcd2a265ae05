"""How long each speaker takes to say each word: the median heard duration of a corpus's
recordings, by speaker and label.

"Heard" as the audio graph's tempo normalisation measures it (``models.nn.tempo``): the 10 ms
frames whose energy is within 30 dB of the recording's loudest. Each distinct recording counts
once, whatever its split.

Usage:
  python bench/bench_tempo.py --corpus runs/sweep/corpus-george
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from models.item_media import InputSpec, load_item
from models.manifest import read_manifest
from models.nn.tempo import active_span
from models.presets import get_preset


def durations(corpus: str, preset_name: str) -> dict[tuple[str, str], list[float]]:
    """(speaker, label) -> the heard duration (s) of each distinct recording."""
    audio = get_preset(preset_name).audio
    spec = InputSpec(get_preset(preset_name).image_size, audio.sample_rate, audio.window_s)
    seen: set[str] = set()
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for item in read_manifest(corpus):
        speaker = item.extra.get("speaker")
        if not item.audio or not speaker or len(item.labels) != 1 or item.audio in seen:
            continue
        seen.add(item.audio)
        _, wave = load_item(corpus, item, spec)
        count, _ = active_span(torch.from_numpy(wave[None].astype(np.float32)), audio.hop_length)
        out[(speaker, item.labels[0])].append(float(count[0]) * audio.hop_length
                                              / audio.sample_rate)
    return out


def table(found: dict[tuple[str, str], list[float]]) -> list[str]:
    speakers = sorted({speaker for speaker, _ in found})
    labels = sorted({label for _, label in found})
    rows = ["| word | " + " | ".join(speakers) + " |", "|---|" + "---:|" * len(speakers)]
    for label in labels:
        cells = [f"{np.median(found[(s, label)]):.2f}" if found.get((s, label)) else ""
                 for s in speakers]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    overall = [f"{np.median([d for (s, _), ds in found.items() if s == sp for d in ds]):.2f}"
               for sp in speakers]
    rows.append("| all | " + " | ".join(overall) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="corpus folder (manifest.jsonl)")
    parser.add_argument("--preset", default="digits", help="the preset whose rate and hop apply")
    args = parser.parse_args()
    found = durations(args.corpus, args.preset)
    if not found:
        raise SystemExit(f"bench_tempo: no single-label recordings with a speaker in {args.corpus}")
    print("\n".join(table(found)))


if __name__ == "__main__":
    main()

"""Per-GPU throughput of the towers with torch on CUDA: inference and training, each preset.

Inference: items/s of each tower at batch 32 and 128, in float32 and in bfloat16 autocast,
after warm-up, timed with CUDA synchronisation. Training: samples/s of a full step (both towers,
InfoNCE and AVOL's MIL, Adam) on random inputs of the preset's shapes, so it measures the GPU
and not the data pipeline. These are the figures docs/scale.md plans a large rebuild with.

Usage (on a machine with an NVIDIA GPU):
  python bench/bench_gpu.py --json runs/bench_gpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch

from models.nn.losses import infonce_loss, mil_loss, roll_negatives
from models.nn.model import AVModel
from models.presets import PRESETS, Preset


def timed(step: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``step`` over about ``seconds``, after three warm-up calls."""
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        calls += 1
    torch.cuda.synchronize()
    return calls / (time.perf_counter() - started)


def inputs(preset: Preset, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    size, samples = preset.image_size, preset.audio.num_samples
    images = torch.rand(batch, 3, size, size, device="cuda")
    waves = torch.randn(batch, samples, device="cuda") * 0.1
    return images, waves


def inference(preset: Preset, seconds: float) -> list[dict]:
    model = AVModel(preset).cuda().eval()
    rows = []
    for batch in (32, 128):
        images, waves = inputs(preset, batch)
        for dtype in ("float32", "bfloat16"):
            autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if dtype == "bfloat16"
                        else nullcontext())
            for tower, run in (("image", lambda x=images: model.image(x)),
                               ("audio", lambda x=waves: model.audio(x))):
                with torch.inference_mode(), autocast:
                    rate = timed(run, seconds) * batch
                rows.append({"preset": preset.name, "tower": tower, "batch": batch,
                             "dtype": dtype, "items_per_s": round(rate)})
    return rows


def training(preset: Preset, batch: int, seconds: float) -> dict:
    model = AVModel(preset).cuda().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images, waves = inputs(preset, batch)
    negatives = roll_negatives(batch).cuda()

    def step() -> None:
        image_emb, grid, audio_emb = model(images, waves)
        loss = infonce_loss(model, image_emb, audio_emb) + mil_loss(model, grid, audio_emb,
                                                                    negatives)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return {"preset": preset.name, "batch": batch,
            "samples_per_s": round(timed(step, seconds) * batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per figure")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu: torch sees no CUDA device")
    torch.backends.cudnn.benchmark = True
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "inference": [], "training": []}
    for preset in PRESETS.values():
        result["inference"] += inference(preset, args.seconds)
        for batch in (64, 128):
            result["training"].append(training(preset, batch, args.seconds))
    print(f"device: {result['device']}, torch {result['torch']}")
    print("| preset | tower | batch | float32 items/s | bfloat16 items/s |")
    print("|---|---|---|---|---|")
    rows = result["inference"]
    for row in (r for r in rows if r["dtype"] == "float32"):
        half = next(r for r in rows if r["dtype"] == "bfloat16" and
                    (r["preset"], r["tower"], r["batch"]) == (row["preset"], row["tower"],
                                                              row["batch"]))
        print(f"| {row['preset']} | {row['tower']} | {row['batch']} | {row['items_per_s']} | "
              f"{half['items_per_s']} |")
    for row in result["training"]:
        print(f"training {row['preset']} batch {row['batch']}: {row['samples_per_s']} samples/s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()

"""Embedding throughput: ONNX Runtime against torch eager, per tower and preset, batch 1 and 32.

Both run side by side in one process on the same inputs, so the printed ratios hold on a noisy
shared machine even where absolute times drift. Also compares the two ways of computing the
spectrogram inside the audio graph (a fixed DFT convolution, as shipped, and ONNX's STFT op),
the audio graph exported with a speed ensemble (``avsearch export --speeds``) against
the plain one, and measures training throughput (samples/s) of each preset.

Usage: python bench/bench_embedding.py [--presets digits,paper] [--repeats 5] [--speeds S1,S2,...]
"""

from __future__ import annotations

import argparse
import io
import statistics

import onnxruntime as ort
import torch
from bench_bundles import best_time
from torch import nn

from models.export import DEFAULT_SPEEDS, AudioGraph, ImageGraph
from models.export_cli import speeds as speed_list
from models.nn.losses import infonce_loss, mil_loss, roll_negatives
from models.nn.model import AVModel
from models.presets import get_preset


def onnx_session(graph: nn.Module, example: torch.Tensor, name: str, dynamo: bool = False):
    buffer = io.BytesIO()
    torch.onnx.export(graph, (example,), buffer, input_names=[name], dynamic_axes={name: {0: "b"}},
                      opset_version=17, dynamo=dynamo)
    return ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])


class StftAudio(nn.Module):
    """The same log-spectrogram through torch.stft (exported as ONNX's STFT op)."""

    def __init__(self, graph: AudioGraph) -> None:
        super().__init__()
        frontend = graph.tower.frontend
        self.n_fft = frontend.kernel.shape[-1]
        self.hop = frontend.hop_length
        self.register_buffer("window", torch.hann_window(self.n_fft))
        self.mel = frontend.mel

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, center=False,
                          return_complex=False)
        power = spec.pow(2).sum(-1)
        if self.mel is not None:
            power = torch.matmul(self.mel, power)
        return torch.log10(power + 1e-10)


class DftAudio(nn.Module):
    def __init__(self, graph: AudioGraph) -> None:
        super().__init__()
        self.frontend = graph.tower.frontend

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.frontend(wave)


def bench_towers(preset_name: str, repeats: int) -> list[str]:
    preset = get_preset(preset_name)
    model = AVModel(preset).eval()
    rows = []
    size, samples = preset.image_size, preset.audio.num_samples
    towers = {
        "image": (ImageGraph(model.image).eval(),
                  lambda b: torch.randint(0, 255, (b, size, size, 3), dtype=torch.uint8), "image"),
        "audio": (AudioGraph(model.audio, preset.audio).eval(),
                  lambda b: torch.randn(b, samples) * 0.1, "audio"),
    }
    for tower, (graph, make, name) in towers.items():
        session = onnx_session(graph, make(2), name)
        for batch in (1, 32):
            x = make(batch)
            with torch.no_grad():
                torch_s = best_time(lambda g=graph, x=x: g(x), repeats)
            onnx_s = best_time(
                lambda s=session, n=name, x=x: s.run(None, {n: x.numpy()}), repeats
            )
            rows.append(f"| {preset_name} | {tower} | {batch} | {batch / torch_s:9.1f} | "
                        f"{batch / onnx_s:9.1f} | {torch_s / onnx_s:5.2f} |")
    return rows


def bench_spectrogram(preset_name: str, repeats: int) -> str:
    preset = get_preset(preset_name)
    graph = AudioGraph(AVModel(preset).audio, preset.audio).eval()
    x = torch.randn(32, preset.audio.num_samples) * 0.1
    dft = onnx_session(DftAudio(graph).eval(), x[:2], "audio")
    stft = onnx_session(StftAudio(graph).eval(), x[:2], "audio")
    dft_s = best_time(lambda: dft.run(None, {"audio": x.numpy()}), repeats)
    stft_s = best_time(lambda: stft.run(None, {"audio": x.numpy()}), repeats)
    return (f"| {preset_name} | n_fft {preset.audio.n_fft} | {dft_s * 1e3:7.2f} | "
            f"{stft_s * 1e3:7.2f} | {stft_s / dft_s:5.2f} |")


def bench_speeds(preset_name: str, speed_sets: list[tuple[float, ...]], repeats: int
                 ) -> list[str]:
    """The audio graph as exported with each ``--speeds`` set against the plain one, in ONNX
    Runtime, the graphs taking turns on the same inputs."""
    preset = get_preset(preset_name)
    tower, samples = AVModel(preset).eval().audio, preset.audio.num_samples
    example = torch.randn(2, samples)
    plain = onnx_session(AudioGraph(tower, preset.audio).eval(), example, "audio")
    ensembles = [onnx_session(AudioGraph(tower, preset.audio, speeds).eval(), example, "audio")
                 for speeds in speed_sets]
    rows = []
    for batch in (1, 32):
        x = (torch.randn(batch, samples) * 0.1).numpy()
        plain_s = best_time(lambda x=x: plain.run(None, {"audio": x}), repeats)
        for speeds, ensemble in zip(speed_sets, ensembles, strict=True):
            ensemble_s = best_time(lambda x=x, e=ensemble: e.run(None, {"audio": x}), repeats)
            rows.append(f"| {preset_name} | {batch} | {plain_s * 1e3:7.2f} | "
                        f"{','.join(map(str, speeds))} | {ensemble_s * 1e3:7.2f} | "
                        f"{ensemble_s / plain_s:5.2f} |")
    return rows


def bench_training(preset_name: str, batch: int, steps: int) -> str:
    preset = get_preset(preset_name)
    model = AVModel(preset).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.rand(batch, 3, preset.image_size, preset.image_size)
    waves = torch.randn(batch, preset.audio.num_samples) * 0.1

    def step() -> None:
        image_emb, grid, audio_emb = model(images, waves)
        negatives = roll_negatives(batch)
        loss = infonce_loss(model, image_emb, audio_emb) + mil_loss(model, grid, audio_emb,
                                                                    negatives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    seconds = statistics.median(best_time(step, 1) for _ in range(steps))
    return f"| {preset_name} | {batch} | {batch / seconds:8.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="digits,paper")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--speeds", type=speed_list, action="append", metavar="S1,S2,...",
                        help="a speed ensemble to time against the plain audio graph (again for "
                        "more; default: the export's)")
    args = parser.parse_args()
    presets = args.presets.split(",")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {ort.__version__}\n")
    print("| preset | tower | batch | torch items/s | ONNX items/s | ONNX / torch |")
    print("|---|---|---|---|---|---|")
    for name in presets:
        for row in bench_towers(name, args.repeats):
            print(row, flush=True)
    print("\n| preset | spectrogram | DFT conv ms (batch 32) | ONNX STFT ms | STFT / DFT |")
    print("|---|---|---|---|---|")
    for name in presets:
        print(bench_spectrogram(name, args.repeats), flush=True)
    speed_sets = args.speeds or [DEFAULT_SPEEDS]
    print("\n| preset | batch | audio graph ms | --speeds | with them ms | ratio |")
    print("|---|---|---|---|---|---|")
    for name in presets:
        for row in bench_speeds(name, speed_sets, args.repeats):
            print(row, flush=True)
    print("\n| preset | batch | training samples/s (forward + backward + Adam) |")
    print("|---|---|---|")
    for name in presets:
        batch = 64 if name == "digits" else 8
        print(bench_training(name, batch, 3), flush=True)


if __name__ == "__main__":
    main()

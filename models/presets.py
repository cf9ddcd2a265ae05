"""Model presets: sizes only, never structure (DESIGN.md, "The model").

A preset fixes what the towers take (frame size, sample rate, spectrogram) and how wide they are.
``paper`` is the published AVE-Net; ``digits`` is a narrow variant for the bundled AV-digits
data that trains on two CPU cores in minutes. Both export and serve the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from models.errors import BundleError


@dataclass(frozen=True)
class AudioSpec:
    """The waveform a tower takes and the log-spectrogram computed from it inside the graph."""

    sample_rate: int
    window_s: float
    n_fft: int  # a power of two: the DFT is a fixed convolution of this width
    win_length: int  # Hann window, centred in the n_fft frame
    hop_length: int
    n_mels: int | None  # None: keep every linear-frequency bin (the paper)
    top_db: float = 80.0  # dynamic range kept below each clip's peak (gain invariance)
    max_warp: float = 0.0  # training only: random frequency-axis stretch (voices of other sizes)
    max_tempo: float = 1.0  # training only: random time-axis stretch by a factor within
    # [1/max_tempo, max_tempo], pitch kept (speakers who say a word faster or slower; 1: off)
    pitch_warp: float = 0.0  # training only: random stretch of the pitch harmonics alone, the
    # formants kept (another pitch over the same vocal tract)
    cmn: bool = False  # subtract each band's mean over time (channel and voice colour)
    lifter: int = 0  # keep this many cepstral coefficients per frame (0: all): the spectral
    # envelope without the pitch harmonics, which say more about the voice than the word
    pre_emphasis: float = 0.0  # first-order high-pass y[n] = x[n] - a x[n-1] before the floor:
    # lifts the quiet consonants toward the vowel's peak (off: on digits it lifted the hiss too)
    pcen: bool = False  # per-channel energy normalisation instead of the log (cmn is then not
    # applied): each band divided by its own recent past, flattening steady noise, lifting onsets
    frame_norm: bool = False  # a second input channel: each frame less its mean over the bands
    # (the spectral shape without the loudness), so a quiet consonant shows as plainly as a vowel
    pooling: str = "max"  # how the audio tower's last map becomes one vector: "max" (AVE-Net's
    # global max-pool) or "meanmax" (its max and its mean side by side: quiet parts of a word,
    # such as consonants, count beside its loudest)

    @property
    def num_samples(self) -> int:
        return round(self.sample_rate * self.window_s)

    @property
    def num_frames(self) -> int:
        return (self.num_samples - self.n_fft) // self.hop_length + 1

    @property
    def num_bins(self) -> int:
        return self.n_mels if self.n_mels else self.n_fft // 2 + 1

    @property
    def mask_widths(self) -> tuple[int, int]:
        """Training's default widest SpecAugment masks: an eighth of the bins, a tenth of the
        frames (``avsearch train --freq-mask/--time-mask`` set others)."""
        return self.num_bins // 8, self.num_frames // 10


@dataclass(frozen=True)
class Preset:
    name: str
    image_size: int  # square RGB frame, pixels
    channels: tuple[int, int, int, int]  # the four VGG blocks
    hidden_dim: int  # first fc (1x1 conv on the grid)
    embed_dim: int
    audio: AudioSpec
    hflip: bool  # horizontal flip augmentation (off for digits: a mirrored 2 is not a 2)
    clusters: int = 0  # training only: groups of training images whose centres the sounds are
    # also taught (cross-modal clustering; 0: off). Digits: ten, the kinds of object the data
    # shows; the labels are never read
    audio_channels: tuple[int, ...] = ()  # the audio tower's block widths, where they are not
    # the image tower's (empty: ``channels``)

    @property
    def audio_widths(self) -> tuple[int, ...]:
        """The audio tower's four block widths."""
        return self.audio_channels or self.channels

    @property
    def grid_size(self) -> int:
        """Locations per side of the vision map: a stride-2 conv, then three 2x2 pools."""
        return self.image_size // 16

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Preset:
        data = dict(data)
        data["audio"] = AudioSpec(**data["audio"])
        data["channels"] = tuple(data["channels"])
        data["audio_channels"] = tuple(data.get("audio_channels", ()))
        return cls(**data)


PAPER = Preset(
    name="paper",
    image_size=224,
    channels=(64, 128, 256, 512),
    hidden_dim=128,
    embed_dim=128,
    audio=AudioSpec(
        sample_rate=48_000, window_s=1.0, n_fft=512, win_length=480, hop_length=240, n_mels=None
    ),
    hflip=True,
)

DIGITS = Preset(
    name="digits",
    image_size=64,
    channels=(16, 32, 64, 128),
    hidden_dim=128,
    embed_dim=128,
    audio=AudioSpec(
        sample_rate=8_000, window_s=1.0, n_fft=256, win_length=200, hop_length=80, n_mels=64,
        top_db=30.0,  # cuts each recording's noise floor to one level (docs/benchmarks.md)
        max_warp=0.25, cmn=True,
    ),
    hflip=False,
    clusters=10,  # docs/benchmarks.md, "Clustering on top of reverberation": five seeds a fold
)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in (PAPER, DIGITS)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise BundleError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None

"""The training configuration: read once from the command line, saved with every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass

LOSSES = ("avc", "infonce")
MIN_TEMPERATURE = 0.01  # AVModel caps its inverse temperature at 100, as CLIP does


@dataclass(frozen=True)
class TrainConfig:
    corpus: str
    out: str
    preset: str = "digits"
    loss: str = "infonce"
    steps: int = 4000  # with ema and lr below: docs/benchmarks.md, "4,000 steps with EMA weights"
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 100
    loc_weight: float = 1.0  # weight of AVOL-Net's MIL loss beside the embedding loss
    distractors: int = 8  # synthetic sounds of no image added to each batch as negatives
    ema: float = 0.998  # decay of an exponential moving average of the weights; 0: off
    channels: tuple[int, ...] = ()  # the towers' block widths; empty: the preset's
    audio_channels: tuple[int, ...] = ()  # the audio tower's alone; empty: as ``channels``
    lifter: int = -1  # cepstral coefficients kept by the audio front end; -1: the preset's
    top_db: float = -1.0  # dynamic range the front end keeps below each clip's peak; -1: preset's
    pre_emphasis: float = -1.0  # the front end's high-pass coefficient; -1: the preset's
    pcen: bool | None = None  # PCEN instead of the log in the front end; None: the preset's
    pitch_warp: float = -1.0  # largest stretch of the pitch harmonics alone; -1: the preset's
    tempo: float = 0.0  # largest random stretch of the time axis (x or 1/x); 0: the preset's
    frame_norm: bool | None = None  # each frame's shape as a second input channel; None: preset's
    audio_pooling: str = ""  # the audio tower's global pooling, max or meanmax; "": the preset's
    view_weight: float = 0.0  # weight of the agreement of two augmented views of each sound
    neighbours: float = 0.0  # share of InfoNCE's target given to alike images; 0: off
    neighbour_temperature: float = 0.1  # softmax temperature of image similarity
    temperature: float = 0.0  # InfoNCE's temperature held fixed; 0: learned (CLIP)
    equaliser: float = 12.0  # dB of a random equaliser on each training sound; 0: off
    reverb: float = 0.5  # share of training sounds heard in a random room; 0: off
    mixstyle: float = 0.0  # share of batches whose early audio feature statistics are mixed
    head_dropout: float = 0.0  # dropout on the audio tower's pooled trunk before its head
    freq_mask: int = -1  # widest SpecAugment band mask, in bins; -1: the preset's mask_widths
    time_mask: int = -1  # widest SpecAugment time mask, in frames; -1: the preset's mask_widths
    mil_alike: float = 0.0  # cosine above which a rolled MIL negative is skipped as alike; 0: off
    clusters: int = -1  # groups of training images whose centres the sounds are taught; 0: off;
    # -1: the preset's
    cluster_weight: float = 1.0  # weight of that loss beside the embedding loss
    recluster_every: int = 250  # steps between two clusterings of the training images
    teachers: tuple[str, ...] = ()  # run folders whose averaged batch similarities are taught
    distill_weight: float = 1.0  # weight of that loss beside the embedding loss
    seed: int = 0
    device: str = "auto"
    eval_every: int = 0  # steps between held-out evaluations; 0: once per epoch
    checkpoint_every: int = 200
    eval_split: str = "test"
    threads: int = 0  # CPU threads for torch; 0: every core
    command: str = ""  # the command line that started the run, recorded for reproduction

    def to_json(self) -> dict:
        return asdict(self)

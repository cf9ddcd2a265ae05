"""Write ``data/sample/``: the small slice of the real data that ``avsearch demo`` builds on.

It keeps the layout that ``avsearch corpus digits --source`` reads: ``fsdd/recordings/`` (FSDD
WAV files, copied unchanged) and ``mnist/*-images-idx3-ubyte.gz`` with its labels file (IDX,
gzip). Usage (from the repository root, with the full data in ../shared/data):

    python scripts/make_sample.py [--source ../shared/data] [--out data/sample]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.corpus.sources import (  # noqa: E402
    IMAGES_MAGIC,
    LABELS_MAGIC,
    find_recordings,
    load_mnist,
)

TAKES = 10  # takes 0-9 of each speaker and digit
IMAGES_PER_DIGIT = 200  # the first 200 of each digit in the MNIST test set
NAME = "t10k-sample"


def _write_gz(path: Path, data: bytes) -> None:
    # mtime=0: the same input gives the same bytes (no churn in git)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "sample")
    args = parser.parse_args()

    recordings = [r for r in find_recordings(args.source) if r.take < TAKES]
    wav_dir = args.out / "fsdd" / "recordings"
    if wav_dir.exists():
        shutil.rmtree(wav_dir)
    wav_dir.mkdir(parents=True)
    for recording in recordings:
        shutil.copyfile(recording.path, wav_dir / recording.name)

    mnist = load_mnist(args.source)
    keep = np.sort(np.concatenate([
        np.flatnonzero(mnist.labels == digit)[:IMAGES_PER_DIGIT] for digit in range(10)]))
    images, labels = mnist.images[keep], mnist.labels[keep]
    mnist_dir = args.out / "mnist"
    if mnist_dir.exists():
        shutil.rmtree(mnist_dir)
    mnist_dir.mkdir(parents=True)
    count, rows, cols = images.shape
    _write_gz(mnist_dir / f"{NAME}-images-idx3-ubyte.gz",
              struct.pack(">iiii", IMAGES_MAGIC, count, rows, cols) + images.tobytes())
    _write_gz(mnist_dir / f"{NAME}-labels-idx1-ubyte.gz",
              struct.pack(">ii", LABELS_MAGIC, count) + labels.tobytes())
    speakers = sorted({r.speaker for r in recordings})
    print(f"wrote {len(recordings)} recordings ({', '.join(speakers)}; takes 0-{TAKES - 1}) and "
          f"{count} MNIST images ({IMAGES_PER_DIGIT} per digit) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The AV-digits corpus builder on the real MNIST and FSDD files (tiny configurations)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from models import cli
from models.corpus.digits import DigitsCorpusConfig, build_digits_corpus
from models.errors import CorpusError
from models.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
DATA = Path(os.environ.get("AVSEARCH_DATA")
            or (SHARED if (SHARED / "mnist").is_dir() else REPO / "data" / "sample"))
SPEAKERS = ("george", "jackson", "nicolas", "yweweler")
MAX_IMAGES = 200
MAX_TAKES = 3

pytestmark = pytest.mark.usefixtures("real_data")  # fails clearly when the data is missing


def _mnist() -> tuple[np.ndarray, np.ndarray]:
    """The first MAX_IMAGES images and labels, read independently of the code under test."""
    with gzip.open(next((DATA / "mnist").glob("*-images-idx3-ubyte.gz"))) as handle:
        data = handle.read()
    magic, count, rows, cols = struct.unpack(">iiii", data[:16])
    assert magic == 2051
    images = np.frombuffer(data, np.uint8, offset=16).reshape(count, rows, cols)
    with gzip.open(next((DATA / "mnist").glob("*-labels-idx1-ubyte.gz"))) as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    return images[:MAX_IMAGES], labels[:MAX_IMAGES]


def _recordings() -> dict[str, Path]:
    found = {}
    for path in (DATA / "fsdd").rglob("*.wav"):
        digit, speaker, take = path.stem.split("_")
        if int(take) < MAX_TAKES:
            found[path.name] = path
    return found


def _config(out: Path, **changes) -> DigitsCorpusConfig:
    config = DigitsCorpusConfig(
        source=DATA,
        out=out,
        test_speakers=("george",),
        max_images=MAX_IMAGES,
        max_takes=MAX_TAKES,
        scenes=8,
        clips=2,
        progress=False,
    )
    return replace(config, **changes)


def _main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``avsearch`` itself, as a user runs it."""
    return cli.main(argv)


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    return _mnist()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits") / "corpus"
    summary = build_digits_corpus(_config(out))
    assert summary.out == out
    assert summary.counts["train"]["scene"] == 8 and summary.counts["test"]["clip"] == 2
    assert summary.speakers == {"train": ["jackson", "nicolas", "yweweler"], "test": ["george"]}
    return out


def _items(corpus: Path, kind: str):
    return [item for item in read_manifest(corpus) if item.extra["kind"] == kind]


def test_cli_builds_a_corpus(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli-corpus"
    argv = [
        "corpus",
        "digits",
        "--source",
        str(DATA),
        "--out",
        str(out),
        "--test-speakers",
        "george",
        "--max-images",
        str(MAX_IMAGES),
        "--max-takes",
        str(MAX_TAKES),
        "--scenes",
        "2",
        "--clips",
        "1",
    ]
    assert _main(argv, monkeypatch) == 0
    captured = capsys.readouterr()
    assert str(out / "manifest.jsonl") in captured.out
    assert "train:" in captured.out and "test:" in captured.out and "4 speakers" in captured.out
    assert "digits corpus" in captured.err  # the progress bar
    items = read_manifest(out)
    kinds = {(i.split, i.extra["kind"]) for i in items}
    assert kinds == {(s, k) for s in ("train", "test") for k in ("pair", "scene", "clip")}
    notice = (out / "NOTICE.md").read_text()
    assert "CC BY-SA 4.0" in notice and "CC BY-SA 3.0" in notice
    assert "Jakobovski" in notice and "LeCun" in notice
    assert not list(tmp_path.glob("*.tmp-*"))


def test_splits_hold_out_speakers_and_a_share_of_images(corpus):
    items = read_manifest(corpus)
    for item in items:
        assert item.split in ("train", "test")
        assert (item.extra["speaker"] == "george") == (item.split == "test")
    pairs = _items(corpus, "pair")
    train_images = {i.extra["mnist_index"] for i in pairs if i.split == "train"}
    test_images = {i.extra["mnist_index"] for i in pairs if i.split == "test"}
    assert not train_images & test_images
    assert len(train_images | test_images) == MAX_IMAGES
    assert abs(len(test_images) / MAX_IMAGES - 0.2) < 0.03
    for scene in _items(corpus, "scene"):
        pool = train_images if scene.split == "train" else test_images
        assert set(scene.extra["mnist_indices"]) <= pool
    for clip in _items(corpus, "clip"):
        pool = train_images if clip.split == "train" else test_images
        assert clip.extra["mnist_index"] in pool


def test_pairs_match_image_and_recording_digits(corpus, mnist):
    images, labels = mnist
    recordings = _recordings()
    for item in _items(corpus, "pair"):
        index = item.extra["mnist_index"]
        pixels = np.asarray(Image.open(corpus / item.image))
        assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
        assert np.array_equal(pixels, images[index])
        spoken = Path(item.audio).name.split("_")[0]
        assert item.labels == (spoken,) == (str(labels[index]),)
        assert item.extra["speaker"] == Path(item.audio).name.split("_")[1]
        source = recordings[Path(item.audio).name]
        assert (corpus / item.audio).read_bytes() == source.read_bytes()


def test_every_image_and_recording_is_used(corpus):
    pairs = _items(corpus, "pair")
    expected = _recordings()
    assert len(expected) == 4 * 10 * MAX_TAKES
    assert {Path(i.audio).name for i in pairs} == set(expected)
    assert {p.name for p in (corpus / "audio").iterdir()} == set(expected)
    assert {i.extra["mnist_index"] for i in pairs} == set(range(MAX_IMAGES))
    assert len(list((corpus / "images").iterdir())) == MAX_IMAGES
    for split in ("train", "test"):  # max(#images, #recordings) per digit, no more
        in_split = [i for i in pairs if i.split == split]
        for digit in "0123456789":
            of_digit = [i for i in in_split if i.labels == (digit,)]
            n_images = len({i.extra["mnist_index"] for i in of_digit})
            n_audio = len({i.audio for i in of_digit})
            assert len(of_digit) == max(n_images, n_audio)


def test_scene_geometry(corpus, mnist):
    images, labels = mnist
    scenes = _items(corpus, "scene")
    assert [s.id for s in scenes] == [f"scene-{n:05d}" for n in range(16)]
    for scene in scenes:
        extra = scene.extra
        canvas = np.asarray(Image.open(corpus / scene.image))
        assert canvas.shape == (56, 56)
        assert extra["grid"] == [2, 2]
        assert len(set(extra["cells"])) == 4
        for position, index in enumerate(extra["mnist_indices"]):
            r, c = divmod(position, 2)
            assert np.array_equal(canvas[28 * r : 28 * r + 28, 28 * c : 28 * c + 28], images[index])
            assert extra["cells"][position] == str(labels[index])
        if extra.get("absent"):  # off-screen: the spoken digit is none of the four
            assert "box" not in extra and "cell" not in extra
            assert scene.labels[0] not in extra["cells"]
            assert Path(scene.audio).name.split("_")[0] == scene.labels[0]
            continue
        cell = extra["cell"]
        row, col = divmod(cell, 2)
        assert extra["box"] == [28 * col, 28 * row, 28 * col + 28, 28 * row + 28]
        x0, y0, x1, y1 = extra["box"]
        assert np.array_equal(canvas[y0:y1, x0:x1], images[extra["mnist_indices"][cell]])
        assert scene.labels == (extra["cells"][cell],)
        assert Path(scene.audio).name.split("_")[0] == extra["cells"][cell]
        assert (corpus / scene.audio).is_file()


def test_absent_share(corpus, tmp_path):
    """About the asked share of scenes is off-screen, and the on-screen ones do not change."""
    scenes = _items(corpus, "scene")
    absent = [s for s in scenes if s.extra.get("absent")]
    assert 0 < len(absent) < len(scenes)
    none = tmp_path / "none"
    build_digits_corpus(_config(none, absent_share=0.0))
    plain = {i.id: i for i in read_manifest(none) if i.extra.get("kind") == "scene"}
    assert not any(i.extra.get("absent") for i in plain.values())
    for scene in scenes:
        if not scene.extra.get("absent"):
            assert scene == plain[scene.id]
    with pytest.raises(CorpusError, match="absent-share"):
        DigitsCorpusConfig(source=DATA, out=none, absent_share=1.0).validate()


def test_val_share_carves_val_from_test_and_leaves_train_alone(corpus, tmp_path):
    """--val-share moves part of the held-out split to val (no recording or image on both
    sides), and the train split is exactly that of a build without it."""
    carved = tmp_path / "val"
    build_digits_corpus(_config(carved, val_share=0.5))
    items = read_manifest(carved)
    assert {i.split for i in items} == {"train", "val", "test"}
    train = [i for i in items if i.split == "train"]
    assert train == [i for i in read_manifest(corpus) if i.split == "train"]
    pairs = {split: [i for i in items if i.split == split and i.extra["kind"] == "pair"]
             for split in ("val", "test")}
    for key in ("audio", "image"):
        val, test = ({getattr(i, key) for i in pairs[split]} for split in ("val", "test"))
        assert not val & test
    assert all(i.extra["speaker"] == "george" for i in pairs["val"] + pairs["test"])
    assert {i.labels for i in pairs["val"]} == {i.labels for i in pairs["test"]}  # every digit
    with pytest.raises(CorpusError, match="val-share"):
        DigitsCorpusConfig(source=DATA, out=carved, val_share=1.0).validate()


def test_clips_are_real_videos(corpus, mnist):
    images, labels = mnist
    clips = _items(corpus, "clip")
    assert len(clips) == 4 and {c.split for c in clips} == {"train", "test"}
    clip = clips[0]
    assert clip.time == 0.5 and clip.image is None and clip.audio is None
    assert clip.labels == (str(labels[clip.extra["mnist_index"]]),)
    with av.open(str(corpus / clip.video)) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
        assert abs(container.duration / 1e6 - 1.0) < 0.1
        audio_stream = container.streams.audio[0]
        assert audio_stream.sample_rate == 16000 and audio_stream.channels == 1
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 25 and frames[0].shape == (112, 112, 3)
    expected = np.kron(images[clip.extra["mnist_index"]], np.ones((4, 4), np.uint8))
    assert np.abs(frames[12][:, :, 0].astype(int) - expected).mean() < 8
    with av.open(str(corpus / clip.video)) as container:
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert 15000 < sound.size < 18000 and np.abs(sound).max() > 0.05


def test_same_config_same_manifest(tmp_path):
    first = build_digits_corpus(_config(tmp_path / "a", clips=0))
    second = build_digits_corpus(_config(tmp_path / "b", clips=0))
    assert first.manifest.read_bytes() == second.manifest.read_bytes()
    other = build_digits_corpus(_config(tmp_path / "c", clips=0, seed=1))
    assert other.manifest.read_bytes() != first.manifest.read_bytes()


def test_one_split_for_everything(tmp_path, mnist):
    test_only = build_digits_corpus(
        _config(tmp_path / "t", test_speakers=(), split="test", speakers=("george",), clips=0)
    )
    items = read_manifest(test_only.out)
    assert {i.split for i in items} == {"test"}
    assert {i.extra["speaker"] for i in items} == {"george"}
    plain = build_digits_corpus(_config(tmp_path / "p", test_speakers=(), scenes=0, clips=0))
    assert {i.split for i in read_manifest(plain.out)} == {"train"}
    per_digit = np.bincount(mnist[1], minlength=10)
    recordings_per_digit = len(SPEAKERS) * MAX_TAKES
    expected = int(np.maximum(per_digit, recordings_per_digit).sum())
    assert plain.counts == {"train": {"pair": expected}}


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--source", "/nonexistent/avsearch-data"], "no mnist/ folder"),
        (["--test-speakers", "alice"], "known speakers: " + ", ".join(SPEAKERS)),
        (["--test-speakers", "george", "--split", "test"], "cannot be combined"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys, extra, needle):
    out = tmp_path / "out"
    argv = [
        "corpus",
        "digits",
        "--source",
        str(DATA),
        "--out",
        str(out),
        "--max-images",
        str(MAX_IMAGES),
        "--max-takes",
        "1",
        *extra,
    ]
    assert _main(argv, monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("avsearch corpus: error: ") and needle in err[0]
    assert not out.exists() and not list(tmp_path.glob("*.tmp-*"))


def test_non_empty_out_needs_overwrite(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = [
        "corpus",
        "digits",
        "--source",
        str(DATA),
        "--out",
        str(out),
        "--max-images",
        str(MAX_IMAGES),
        "--max-takes",
        "1",
        "--no-progress",
    ]
    assert _main(argv, monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0] and "--overwrite" in err[0]
    assert (out / "keep.txt").read_text() == "mine"
    assert _main([*argv, "--overwrite"], monkeypatch) == 0
    assert not (out / "keep.txt").exists() and (out / "manifest.jsonl").is_file()
    assert not list(tmp_path.glob("out.*"))


def _fake_source(tmp_path: Path, images: bytes, labels: bytes) -> Path:
    source = tmp_path / "source"
    (source / "mnist").mkdir(parents=True)
    (source / "fsdd").mkdir()
    for path in list((DATA / "fsdd").rglob("0_*_0.wav"))[:2]:
        shutil.copyfile(path, source / "fsdd" / path.name)
    (source / "mnist" / "x-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (source / "mnist" / "x-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return source


def test_bad_sources_are_corpus_errors(tmp_path):
    pixels = bytes(3 * 28 * 28)
    good_images = struct.pack(">iiii", 2051, 3, 28, 28) + pixels
    cases = {
        "do not belong together": (good_images, struct.pack(">ii", 2049, 2) + bytes(2)),
        "malformed IDX header": (
            struct.pack(">iiii", 1234, 3, 28, 28) + pixels,
            struct.pack(">ii", 2049, 3) + bytes(3),
        ),
        "file holds": (good_images[:-10], struct.pack(">ii", 2049, 3) + bytes(3)),
    }
    for number, (needle, (images, labels)) in enumerate(cases.items()):
        source = _fake_source(tmp_path / str(number), images, labels)
        with pytest.raises(CorpusError, match=needle):
            build_digits_corpus(DigitsCorpusConfig(source=source, out=tmp_path / f"o{number}"))
    # Valid files, but only digit 0 in the images: digit 1 has no image.
    source = _fake_source(tmp_path / "few", good_images, struct.pack(">ii", 2049, 3) + bytes(3))
    with pytest.raises(CorpusError, match="no image of digit 1"):
        build_digits_corpus(DigitsCorpusConfig(source=source, out=tmp_path / "few-out"))
    empty = tmp_path / "empty"
    (empty / "fsdd").mkdir(parents=True)
    shutil.copytree(DATA / "mnist", empty / "mnist")
    with pytest.raises(CorpusError, match="no recordings"):
        build_digits_corpus(DigitsCorpusConfig(source=empty, out=tmp_path / "empty-out"))


def test_manifest_lines_are_plain_json(corpus):
    first = json.loads((corpus / "manifest.jsonl").read_text().splitlines()[0])
    assert first["id"] == "pair-00000"
    assert set(first) == {
        "id",
        "image",
        "audio",
        "split",
        "labels",
        "kind",
        "speaker",
        "mnist_index",
        "take",
    }

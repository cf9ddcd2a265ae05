"""Property-based fuzzing of the upload endpoints: random and mutated uploads with random
parameters never get a 5xx, always a JSON answer, and leave the server serving."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import of_kind

ALLOWED = {200, 400, 413, 415, 422}
EXAMPLES = int(os.environ.get("AVSEARCH_FUZZ_EXAMPLES", "150"))  # more for a longer hunt
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def seeds(service_corpus: Path) -> list[bytes]:
    """Real files of each kind, to mutate: mutations of valid media reach deep into decoders."""
    pair = of_kind(service_corpus, "pair")[0]
    scene = of_kind(service_corpus, "scene")[0]
    clip = of_kind(service_corpus, "clip")[0]
    paths = [pair["image"], pair["audio"], scene["image"], clip["video"]]
    return [(service_corpus / p).read_bytes() for p in paths]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "zero":
            data[at : at + draw(st.integers(1, 512))] = bytes(
                len(data[at : at + 512]))
    return bytes(data)


def uploads(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=2048), mutated(seeds))


def form_values() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional={
        "k": st.one_of(st.integers(-3, 150).map(str), st.text(max_size=5)),
        "direction": st.one_of(st.sampled_from(["im2aud", "aud2im", "im2im", "aud2aud"]),
                               st.text(max_size=8)),
        "t": st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str),
                       st.text(max_size=6)),
    })


def _check(answer: httpx.Response) -> None:
    assert answer.status_code in ALLOWED, (answer.status_code, answer.text[:300])
    body = answer.json()
    if answer.status_code != 200:
        assert body["error"]["code"] and body["error"]["message"]


def test_fuzz_search(server: httpx.Client, seeds: list[bytes]) -> None:
    @FUZZ
    @given(data=uploads(seeds), form=form_values())
    def check(data: bytes, form: dict[str, str]) -> None:
        _check(server.post("/v1/search", files={"file": ("upload", data)}, data=form))

    check()


def test_fuzz_localize(server: httpx.Client, seeds: list[bytes]) -> None:
    @FUZZ
    @given(image=uploads(seeds), audio=uploads(seeds), clip=st.booleans(),
           t=st.one_of(st.none(), st.floats(-1, 5).map(str)))
    def check(image: bytes, audio: bytes, clip: bool, t: str | None) -> None:
        files = ({"file": ("clip", image)} if clip
                 else {"image": ("i", image), "audio": ("a", audio)})
        _check(server.post("/v1/localize", files=files, data={"t": t} if t else {}))

    check()


def test_fuzzing_left_the_server_healthy(server: httpx.Client, seeds: list[bytes]) -> None:
    good = server.post("/v1/search", files={"file": ("x.png", seeds[0])})
    assert good.status_code == 200
    assert 'status="500"' not in server.get("/metrics").text

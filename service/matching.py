"""Match probabilities on search hits, and the ``min_probability`` cut behind ``no_match``.

The bundle's calibration (``avsearch export`` / ``avsearch calibrate``) turns each hit's score
into the probability that query and hit correspond. A search keeps the hits at or above
``min_probability`` (by default the threshold chosen at calibration); when none is left, the
answer says ``no_match`` instead of returning weak hits.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.expansion import EXPANDED
from models.runtime import ModelRuntime
from service.queries import Direction, Hit, QueryError

CALIBRATION_DIRECTION: dict[str, str] = {
    "im2aud": "im-aud", "aud2im": "aud-im", "im2im": "im-im", "aud2aud": "aud-aud",
}


def applied_cut(runtime: ModelRuntime, min_probability: float | None) -> float | None:
    """The cut a search applies: the one asked for, else the bundle's default, else none."""
    fit = runtime.info.match_calibration
    if fit is None:
        if min_probability:
            raise QueryError("min_probability needs a calibrated model bundle; this one has no "
                             "match calibration (see `avsearch calibrate`)")
        return None
    return fit.threshold if min_probability is None else min_probability


def with_probabilities(runtime: ModelRuntime, direction: Direction, hits: list[Hit],
                       cut: float | None, expanded: bool = False) -> list[Hit]:
    """``hits`` with their match probability, less those below ``cut``. The hits of an
    expanded sound query take the curve fitted on expanded queries, where the bundle has it."""
    scores = np.array([hit.score for hit in hits], dtype=np.float64)
    key = CALIBRATION_DIRECTION[direction]
    if expanded and runtime.has_match_curve(key + EXPANDED):
        key += EXPANDED
    probabilities = runtime.match_probability(key, scores)
    if probabilities is None:
        return hits
    scored = [replace(hit, probability=float(p))
              for hit, p in zip(hits, probabilities, strict=True)]
    return [hit for hit in scored if cut is None or hit.probability >= cut]

"""Calibrated probabilities: the Platt fit and its measures, and calibration at export/eval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.bundle import read_model_info
from models.calibration import (
    Platt,
    best_threshold,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    operating_point,
    reliability_table,
)
from models.cli import main
from models.corpus.digits import DigitsCorpusConfig, build_digits_corpus
from models.runtime import ModelRuntime


def _logistic_sample(a: float, b: float, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-1.0, 1.0, n)
    outcomes = rng.random(n) < Platt(a, b)(scores)
    return scores, outcomes


def test_platt_recovers_the_parameters_of_a_logistic_outcome():
    scores, outcomes = _logistic_sample(4.0, -1.0, 40_000)
    fit = fit_platt(scores, outcomes)
    assert fit.a == pytest.approx(4.0, abs=0.25) and fit.b == pytest.approx(-1.0, abs=0.1)


def test_platt_stays_finite_on_separable_data():
    scores = np.array([-0.5, -0.4, -0.3, 0.3, 0.4, 0.5])
    fit = fit_platt(scores, scores > 0)
    assert np.isfinite(fit.a) and np.isfinite(fit.b) and fit.a > 0
    assert 0.5 < fit(0.5) < 1.0 and 0.0 < fit(-0.5) < 0.5


def test_platt_needs_both_outcomes():
    with pytest.raises(ValueError, match="both"):
        fit_platt(np.array([0.1, 0.2]), np.array([True, True]))


def test_isotonic_follows_a_shape_a_logistic_cannot():
    """Matches at a floor of 30% among low scores, then rising: isotonic follows it."""
    rng = np.random.default_rng(2)
    scores = rng.uniform(0.0, 1.0, 40_000)
    truth = np.where(scores < 0.5, 0.3, 0.3 + 1.3 * (scores - 0.5))
    outcomes = rng.random(scores.size) < truth
    curve = fit_isotonic(scores, outcomes)
    assert all(b >= a for a, b in zip(curve.y, curve.y[1:], strict=False))  # monotone
    assert 0.001 <= min(curve.y) and max(curve.y) <= 0.999
    grid = np.linspace(0.05, 0.95, 10)
    truth_grid = np.where(grid < 0.5, 0.3, 0.3 + 1.3 * (grid - 0.5))
    assert np.abs(curve(grid) - truth_grid).max() < 0.06
    assert expected_calibration_error(curve(scores), outcomes) < 0.01
    platt = fit_platt(scores, outcomes)
    assert expected_calibration_error(platt(scores), outcomes) > \
        expected_calibration_error(curve(scores), outcomes)


def test_ece_is_small_when_calibrated_and_large_when_not():
    scores, outcomes = _logistic_sample(4.0, -1.0, 40_000, seed=1)
    calibrated = Platt(4.0, -1.0)(scores)
    assert expected_calibration_error(calibrated, outcomes) < 0.02
    overconfident = Platt(12.0, -3.0)(scores)
    assert expected_calibration_error(overconfident, outcomes) > 0.08


def test_reliability_table_counts_every_pair_once():
    probabilities = np.array([0.0, 0.05, 0.15, 0.95, 1.0])
    table = reliability_table(probabilities, np.array([0, 0, 1, 1, 1]), bins=10)
    assert len(table) == 10 and sum(row["pairs"] for row in table) == 5
    assert table[0]["pairs"] == 2 and table[0]["match_rate"] == 0.0
    assert table[9]["pairs"] == 2 and table[9]["mean_probability"] == pytest.approx(0.975)


def test_threshold_and_its_precision_and_recall():
    probabilities = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.2])
    outcomes = np.array([True, True, False, True, False, False])
    point = operating_point(probabilities, outcomes, 0.5)
    assert (point.precision, point.recall) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    best = best_threshold(probabilities, outcomes, floor=0.0)
    assert best.recall == 1.0 and best.precision == pytest.approx(0.75)  # accept >= 0.4
    floored = best_threshold(probabilities, outcomes)  # never below 0.5
    assert floored.threshold == pytest.approx(0.8) and floored.precision == 1.0


@pytest.fixture(scope="module")
def val_corpus(real_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("val-corpus") / "digits"
    build_digits_corpus(DigitsCorpusConfig(
        source=real_data, out=out, test_speakers=("george",), max_images=200, max_takes=2,
        scenes=16, val_share=0.5, progress=False))
    return out


@pytest.fixture(scope="module")
def calibrated_bundle(tiny_run, val_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibrated") / "model"
    assert main(["export", str(tiny_run), "--out", str(out), "--corpus", str(val_corpus)]) == 0
    return out


def test_export_calibrates_on_the_val_split(calibrated_bundle, val_corpus, capsys):
    info = read_model_info(calibrated_bundle)
    match = info.match_calibration
    # A direction is fitted where its hits hold matches and non-matches: here (one take per
    # digit and speaker in val) a sound's other hits never match, so aud-aud has no fit.
    # Sound queries expanded through the split's other sounds (a search's default) get curves
    # of their own.
    assert match is not None
    assert set(match.directions) == {"im-im", "im-aud", "aud-im", "aud-im+expand"}
    assert 0.0 < match.threshold < 1.0 and 0.0 <= match.precision <= 1.0
    assert match.fitted_on["split"] == "val" and match.fitted_on["corpus"] == str(val_corpus)
    assert match.fitted_on["aud-aud"] == "features" and match.fitted_on["expand"] == 10
    assert match.fitted_on["pairs"] > match.fitted_on["matches"] > 0
    assert info.on_screen is not None and info.on_screen.fitted_on["off_screen"] > 0
    runtime = ModelRuntime(calibrated_bundle, device="cpu")
    probabilities = runtime.match_probability("aud-im", np.array([-0.5, 0.0, 0.5, 1.0]))
    assert probabilities is not None and np.all(np.diff(probabilities) >= 0)  # monotone


def test_eval_reports_ece_reliability_and_on_screen(calibrated_bundle, val_corpus, tmp_path,
                                                    capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(calibrated_bundle), "--corpus", str(val_corpus),
                 "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    calibration = result["calibration"]
    assert {"ece", "threshold", "precision", "recall"} <= set(calibration)
    assert 0.0 <= calibration["ece"] <= 1.0 and len(calibration["reliability"]) == 10
    assert sum(row["pairs"] for row in calibration["reliability"]) == calibration["pairs"]
    assert 0.0 <= result["localization"]["offscreen_auroc"] <= 1.0
    assert 0.0 <= result["localization"]["on_screen_ece"] <= 1.0
    assert "match probability on" in capsys.readouterr().out


def test_recalibrate_in_place_and_refuse_a_missing_split(calibrated_bundle, val_corpus,
                                                         tiny_corpus, capsys):
    before = read_model_info(calibrated_bundle)
    assert main(["calibrate", "--model", str(calibrated_bundle), "--corpus", str(val_corpus),
                 "--quiet"]) == 0
    after = read_model_info(calibrated_bundle)  # content hash still verifies
    assert after.match_calibration == before.match_calibration
    assert main(["calibrate", "--model", str(calibrated_bundle), "--corpus",
                 str(tiny_corpus)]) == 2
    assert "no 'val' split" in capsys.readouterr().err


def test_export_without_a_val_split_says_so(tiny_bundle):
    assert read_model_info(tiny_bundle).match_calibration is None


def test_a_logistic_calibration_still_reads(tiny_bundle, tmp_path):
    """A bundle calibrated with one logistic curve per direction (no ``method`` field) loads,
    and its probabilities follow that curve."""
    import shutil

    bundle = tmp_path / "platt"
    shutil.copytree(tiny_bundle, bundle)
    info = json.loads((bundle / "model.json").read_text())
    info["match_calibration"] = {"directions": {"aud-im": {"a": 10.0, "b": -5.0}},
                                 "threshold": 0.5, "precision": 0.9, "recall": 0.9}
    (bundle / "model.json").write_text(json.dumps(info))
    runtime = ModelRuntime(bundle, device="cpu")
    probabilities = runtime.match_probability("aud-im", np.array([0.0, 0.5, 1.0]))
    assert probabilities == pytest.approx(Platt(10.0, -5.0)(np.array([0.0, 0.5, 1.0])))
    assert runtime.match_probability("im-aud", np.array([0.5])) is None

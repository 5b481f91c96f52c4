import numpy as np
import pytest

from avatar.decision import at_threshold, choose_threshold, decide, platt
from avatar.runtime.model import calibrated


def test_platt_scaling_calibrates_an_overconfident_margin():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 20_000)
    labels = (rng.random(20_000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    a, b = platt(3 * true_logit + 1, labels)  # the model's margin: three times too confident, shifted
    assert a == pytest.approx(1 / 3, abs=0.03) and b == pytest.approx(-1 / 3, abs=0.06)
    p = calibrated(3 * true_logit + 1, a, b)
    for lo in (0.1, 0.5, 0.8):  # predicted probabilities match observed frequencies
        band = (p >= lo) & (p < lo + 0.1)
        assert labels[band].mean() == pytest.approx(p[band].mean(), abs=0.03)


def test_a_constant_model_is_calibrated_to_the_base_rate():
    labels = np.array([1] * 30 + [0] * 70)
    a, b = platt(np.full(100, 0.2), labels)
    assert calibrated(np.array([0.2]), a, b)[0] == pytest.approx(0.3, abs=1e-3)


def test_threshold_rules():
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    t, rule = choose_threshold(p, y)
    assert t == 0.6 and rule == "the best F1 on the validation split"  # 3 of 4 right, 3 of 4 found: F1 0.75
    assert at_threshold(p, y, t) == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "flagged_share": 0.5, "examples": 8}
    t, rule = choose_threshold(p, y, target_precision=1.0)
    assert t == 0.8 and "at least 1" in rule
    t, rule = choose_threshold(np.array([0.5, 0.5]), np.array([0, 0]), target_precision=0.9)
    assert t == 0.5 and "none reaches 0.9" in rule


def test_the_test_split_never_moves_the_choice():
    rng = np.random.default_rng(1)
    vm, vy = rng.normal(size=500), rng.integers(0, 2, 500)
    one = decide(vm, vy, rng.normal(size=300), rng.integers(0, 2, 300))
    two = decide(vm, vy, rng.normal(size=50) + 5, np.ones(50, dtype=int))
    assert one["threshold"] == two["threshold"] and one["calibration"] == two["calibration"]
    assert one["validation"] == two["validation"] and one["test"] != two["test"]

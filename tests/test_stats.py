import numpy as np
import pytest

from avatar.stats import baseline, bootstrap_intervals, learned_nothing, mcnemar
from avatar.tasks import get_task


def _scored(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = labels + rng.normal(0, 1.0, n)  # informative but noisy
    return labels, (scores > 0.5).astype(int), scores


def test_intervals_contain_the_estimate_and_shrink_with_more_examples():
    task = get_task("defect")
    widths = []
    for n in (100, 1600):
        labels, preds, scores = _scored(n)
        point = task.metrics(labels.tolist(), preds.tolist(), scores.tolist())
        intervals = bootstrap_intervals(task, labels, preds, scores, samples=300)
        assert set(intervals) == {"accuracy", "f1", "roc_auc"}
        for name, (lo, hi) in intervals.items():
            assert lo <= point[name] <= hi
        widths.append(intervals["accuracy"][1] - intervals["accuracy"][0])
    assert widths[1] < widths[0] / 2.5  # about 1/sqrt(16) = 1/4 of the width


def test_the_baseline_is_the_best_constant_prediction():
    labels = [0] * 54 + [1] * 46
    assert baseline(get_task("defect"), labels) == {"accuracy": 0.54, "f1": pytest.approx(2 * 46 / (100 + 46)), "roc_auc": 0.5}
    assert baseline(get_task("clone"), [0, 1] * 50)["f1"] == pytest.approx(2 / 3)  # "always clone" on balanced pairs


def _scores(value, lo, hi, spread, floor=0.54):
    return {"accuracy": value, "interval95": {"accuracy": [lo, hi]}, "baseline": {"accuracy": floor},
            "prediction_spread": spread, "examples": 2732}


def test_a_model_that_learned_nothing_is_told_apart():
    assert learned_nothing(_scores(0.59, 0.57, 0.61, 0.12), "accuracy") is None
    assert "reaches the majority-class baseline 0.5400" in learned_nothing(_scores(0.55, 0.53, 0.57, 0.12), "accuracy")
    assert "barely vary" in learned_nothing(_scores(0.59, 0.57, 0.61, 0.001), "accuracy")  # a constant, even if lucky


def test_mcnemar_on_a_known_table():
    # 10 examples only the first gets right, 2 only the second: exact two-sided p = 2 * P(X <= 2 | n=12, 1/2)
    a = [1] * 10 + [0] * 2 + [1] * 30 + [0] * 8
    b = [0] * 10 + [1] * 2 + [1] * 30 + [0] * 8
    r = mcnemar(a, b)
    assert (r["only_first_right"], r["only_second_right"]) == (10, 2)
    assert r["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 4096, abs=1e-6)  # 0.03857
    assert mcnemar(a, a)["p_value"] == 1.0


def test_the_vectorised_resample_metrics_are_the_tasks_own(monkeypatch):
    import avatar.stats as stats

    class Identity:  # every "resample" is the data itself: each interval collapses onto the task's own metric
        def integers(self, low, high, size):
            return np.tile(np.arange(high), (size[0], 1))

    task = get_task("defect")
    labels, preds, scores = _scored(50, seed=3)
    monkeypatch.setattr(stats.np.random, "default_rng", lambda seed: Identity())
    intervals = stats.bootstrap_intervals(task, labels, preds, scores, samples=3)
    point = task.metrics(labels.tolist(), preds.tolist(), scores.tolist())
    assert set(intervals) == {"accuracy", "f1", "roc_auc"}
    for name, (lo, hi) in intervals.items():
        assert lo == hi == pytest.approx(point[name], abs=1e-4)

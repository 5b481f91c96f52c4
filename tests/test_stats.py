import numpy as np
import pytest

from avatar.stats import bootstrap_intervals, majority_baseline, mcnemar
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


def test_majority_baseline():
    labels = [0] * 54 + [1] * 46
    assert majority_baseline(get_task("defect"), labels) == {"accuracy": 0.54, "f1": 0.0}


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

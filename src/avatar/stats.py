"""How much a score can be trusted: the majority-class baseline, bootstrap intervals, a paired test.

A test-set score is a sample: on Devign's 2,732 test functions accuracy has a standard error near one point,
so a difference of a few tenths between teacher and student says nothing by itself. Every score is shown with
its baseline and its 95 % interval, and student vs teacher with McNemar's test on the same examples.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 1000  # resamples of the test set per interval
LEVEL = 0.95  # coverage of the intervals


def majority_baseline(task, labels) -> dict[str, float]:
    """The scores of always predicting the most frequent test label (what a model that learned nothing gets)."""
    labels = np.asarray(labels)
    majority = int(np.bincount(labels, minlength=2).argmax())
    return {k: v for k, v in task.metrics(labels.tolist(), [majority] * len(labels)).items() if k in ("accuracy", "f1")}


def bootstrap_intervals(task, labels, preds, scores, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> dict[str, list[float]]:
    """Percentile bootstrap intervals (``LEVEL``) of accuracy, F1 and ROC AUC over resamples of the test examples.

    All resamples at once: accuracy and F1 from counts, ROC AUC from ranks (Mann-Whitney, ties averaged), the
    same definitions as ``Task.metrics`` (F1 of class 1; 0 when nothing is predicted positive).
    """
    from scipy.stats import rankdata

    labels, preds, scores = np.asarray(labels), np.asarray(preds), np.asarray(scores, dtype=np.float64)
    rows = np.random.default_rng(seed).integers(0, len(labels), (samples, len(labels)))  # (B, n)
    y, p = labels[rows].astype(bool), preds[rows].astype(bool)
    tp, fp, fn = (y & p).sum(1), (~y & p).sum(1), (y & ~p).sum(1)
    draws = {"accuracy": (y == p).mean(1), "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)}
    positives = y.sum(1)
    both = (positives > 0) & (positives < y.shape[1])  # ROC AUC needs both classes in the resample
    if both.any():
        ranks = rankdata(scores[rows][both], axis=1)
        n1, n0 = positives[both], y.shape[1] - positives[both]
        draws["roc_auc"] = ((ranks * y[both]).sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    tail = (1 - LEVEL) / 2 * 100
    return {name: [round(float(np.percentile(v, tail)), 4), round(float(np.percentile(v, 100 - tail)), 4)] for name, v in draws.items()}


def mcnemar(correct_a, correct_b) -> dict:
    """McNemar's exact test of two models on the same examples: do they err on different ones more than chance?

    ``b``: examples only A gets right; ``c``: only B. Two-sided binomial p-value of min(b, c) in b + c at 1/2.
    """
    from scipy.stats import binomtest

    a, b_ = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b_).sum()), int((~a & b_).sum())
    p = 1.0 if only_a + only_b == 0 else float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)
    return {"only_first_right": only_a, "only_second_right": only_b, "p_value": round(p, 6)}

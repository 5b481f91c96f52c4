"""How much a score can be trusted: the constant-prediction baseline, bootstrap intervals, a paired test.

A test-set score is a sample: on Devign's 2,732 test functions accuracy has a standard error near one point,
so a difference of a few tenths between teacher and student says nothing by itself. Every score is shown with
its baseline and its 95 % interval, and student vs teacher with McNemar's test on the same examples.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_SAMPLES = 1000  # resamples of the test set per interval
LEVEL = 0.95  # coverage of the intervals


BASELINE_RULE = {"accuracy": "majority-class", "f1": "always-positive", "macro_f1": "best constant-class",  # the constant prediction that scores best
                 "roc_auc": "chance (a constant or random score)"}
SPREAD_FLOOR = 0.01  # a model whose P(class 1) varies less than this over the test set (sd) says the same of everything


def baseline(task, labels) -> dict[str, float]:
    """What a model that learned nothing gets: the best constant prediction's score on these labels (accuracy:
    the majority class; F1 of class 1: always predicting it; macro-F1: the best single class; ROC AUC: 0.5)."""
    labels = np.asarray(labels)
    majority = int(np.bincount(labels, minlength=task.num_classes).argmax())
    out = {"accuracy": task.metrics(labels.tolist(), [majority] * len(labels))["accuracy"]}
    if task.num_classes == 2:
        out["f1"] = task.metrics(labels.tolist(), [1] * len(labels))["f1"]
        out["roc_auc"] = 0.5  # a score that does not depend on the input ranks positives above negatives by chance
    else:
        out["macro_f1"] = max(task.metrics(labels.tolist(), [c] * len(labels))["macro_f1"] for c in range(task.num_classes))
    return out


def test_scores(task, labels, logits) -> dict:
    """A model's scores on labelled examples from its logits (N, C): the task's metrics, their 95 % bootstrap
    intervals, the constant-prediction baseline and the spread of its class probabilities."""
    labels = np.asarray(labels)
    preds, margin = task.read_logits(logits)  # with two classes the margin ranks as P(class 1) does
    return {**task.metrics(labels.tolist(), preds, margin), "examples": len(labels),
            "interval95": bootstrap_intervals(task, labels, preds, margin), "baseline": baseline(task, labels),
            "prediction_spread": prediction_spread(logits)}


def prediction_spread(logits) -> float:
    """How much a model's class probabilities vary over examples: the largest of their standard deviations (with
    two classes, that of P(class 1))."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return float((z / z.sum(axis=1, keepdims=True)).std(axis=0).max())


def learned_nothing(scores: dict, metric: str) -> str | None:
    """"has learned nothing ...: why", when test ``scores`` (as measurement and export record them) show no
    learning; else None. The caller puts the model's name in front."""
    spread = scores.get("prediction_spread")
    if spread is not None and spread < SPREAD_FLOOR:
        return (f"has learned nothing usable: its predictions barely vary over the {scores['examples']} test examples "
                f"(sd of the probability {spread:.3g}), so it gives every input nearly the same score")
    lo, hi = scores["interval95"][metric]
    floor = scores["baseline"][metric]
    if lo <= floor:
        return (f"has learned nothing measurable: its test {metric} interval [{lo:.3f}, {hi:.3f}] reaches the "
                f"{BASELINE_RULE[metric]} baseline {floor:.4f}")
    return None


def _draws(labels, preds, scores, seed: int, samples: int, num_classes: int = 2) -> dict[str, np.ndarray]:
    """Accuracy, F1 and ROC AUC (two classes; more: accuracy and macro-F1) over ``samples`` resamples of the
    examples, all at once: accuracy and F1 from counts, ROC AUC from ranks (Mann-Whitney, ties averaged), the
    same definitions as ``Task.metrics`` (F1 of class 1, or of each class; 0 when nothing is predicted so)."""
    from scipy.stats import rankdata

    labels, preds = np.asarray(labels), np.asarray(preds)
    rows = np.random.default_rng(seed).integers(0, len(labels), (samples, len(labels)))  # (B, n)
    if num_classes > 2:
        y, p = labels[rows], preds[rows]
        f1s = []
        for c in range(num_classes):
            tp, fp, fn = ((y == c) & (p == c)).sum(1), ((y != c) & (p == c)).sum(1), ((y == c) & (p != c)).sum(1)
            f1s.append(np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0))
        return {"accuracy": (y == p).mean(1), "macro_f1": np.mean(f1s, axis=0)}
    scores = np.asarray(scores, dtype=np.float64)
    y, p = labels[rows].astype(bool), preds[rows].astype(bool)
    tp, fp, fn = (y & p).sum(1), (~y & p).sum(1), (y & ~p).sum(1)
    draws = {"accuracy": (y == p).mean(1), "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)}
    positives = y.sum(1)
    both = (positives > 0) & (positives < y.shape[1])  # ROC AUC needs both classes in the resample
    if both.any():
        ranks = rankdata(scores[rows][both], axis=1)
        n1, n0 = positives[both], y.shape[1] - positives[both]
        draws["roc_auc"] = ((ranks * y[both]).sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return draws


def bootstrap_intervals(task, labels, preds, scores, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> dict[str, list[float]]:
    """Percentile bootstrap intervals (``LEVEL``) of the task's scores (accuracy, F1 and ROC AUC; with more than
    two classes accuracy and macro-F1) over resamples of the test examples."""
    tail = (1 - LEVEL) / 2 * 100
    return {name: [round(float(np.percentile(v, tail)), 4), round(float(np.percentile(v, 100 - tail)), 4)]
            for name, v in _draws(labels, preds, scores, seed, samples, task.num_classes).items()}


def bootstrap_sd(labels, preds, scores, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES, num_classes: int = 2) -> dict[str, float]:
    """The standard error of the scores ``bootstrap_intervals`` gives, from resampling the examples: how much a
    score would move on another draw of the same number of examples."""
    return {name: float(np.std(v)) for name, v in _draws(labels, preds, scores, seed, samples, num_classes).items()}


def mcnemar(correct_a, correct_b) -> dict:
    """McNemar's exact test of two models on the same examples: do they err on different ones more than chance?

    ``b``: examples only A gets right; ``c``: only B. Two-sided binomial p-value of min(b, c) in b + c at 1/2.
    """
    from scipy.stats import binomtest

    a, b_ = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b_).sum()), int((~a & b_).sum())
    p = 1.0 if only_a + only_b == 0 else float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)
    return {"only_first_right": only_a, "only_second_right": only_b, "p_value": round(p, 6)}

"""What a score means to a user: calibrated probabilities and a decision threshold, both chosen on validation.

An exported model's raw P(class 1) is whatever distillation left (a model with test ROC AUC 0.6 may put every
function near 0.5). So the export fits Platt scaling (P = sigmoid(a * margin + b), margin = logit 1 - logit 0)
on the validation split, chooses the threshold on the same split (the best F1, or the lowest threshold that
reaches a target precision), and reports precision and recall at it on validation and on test. The test split
never influences either choice.

With more than two classes the calibration is a temperature (the one that minimises the validation log loss),
and the threshold, when some classes mean a finding, is on the probability of a finding: the positive classes'
total. Without such classes there is nothing to flag: the model's class is its answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avatar.runtime.model import calibrated, softmax


def platt(margin: np.ndarray, labels: np.ndarray, ridge: float = 1e-3, iterations: int = 50) -> tuple[float, float]:
    """(a, b) minimising the log loss of sigmoid(a * margin + b), by Newton's method; a small ridge keeps a
    constant margin (a model that says the same of everything) at a = 0, b = the log-odds of the base rate."""
    x = np.stack([np.asarray(margin, dtype=np.float64), np.ones(len(margin))], axis=1)  # (n, 2)
    y = np.asarray(labels, dtype=np.float64)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -500, 500)))
        grad = x.T @ (p - y) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def at_threshold(probability: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Precision, recall and F1 of flagging what is at or above ``threshold``, and the share flagged."""
    flagged, y = np.asarray(probability) >= threshold, np.asarray(labels).astype(bool)
    tp, fp, fn = int((flagged & y).sum()), int((flagged & ~y).sum()), int((~flagged & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "flagged_share": round(float(flagged.mean()), 4) if len(y) else 0.0, "examples": int(len(y))}


def choose_threshold(probability: np.ndarray, labels: np.ndarray, target_precision: float | None = None) -> tuple[float, str]:
    """The threshold and its rule in words: the best F1 over every distinct probability, or the lowest one whose
    precision reaches ``target_precision`` (the highest-precision one when none does)."""
    candidates = np.unique(np.asarray(probability, dtype=np.float64))[::-1]  # high to low: flagging grows
    rows = [(float(t), at_threshold(probability, labels, t)) for t in candidates]
    if target_precision is None:
        t, _ = max(rows, key=lambda r: (r[1]["f1"], r[0]))
        return t, "the best F1 on the validation split"
    reaching = [r for r in rows if r[1]["precision"] >= target_precision]
    if reaching:
        return min(r[0] for r in reaching), f"the lowest with validation precision at least {target_precision:g}"
    t, _ = max(rows, key=lambda r: (r[1]["precision"], r[0]))
    return t, f"the highest validation precision (none reaches {target_precision:g})"


def temperature(logits: np.ndarray, labels: np.ndarray, low: float = 0.05, high: float = 20.0, iterations: int = 60) -> float:
    """The temperature minimising the log loss of softmax(logits / T) on ``labels``: golden-section search over
    log T (the loss is unimodal in T)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)

    def loss(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))[np.arange(len(labels)), labels]
        return float(-np.log(np.maximum(p, 1e-300)).mean())

    a, b = np.log(low), np.log(high)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(iterations):
        if loss(c) < loss(d):
            b, d = d, c
            c = b - g * (b - a)
        else:
            a, c = c, d
            d = a + g * (b - a)
    return float(np.exp((a + b) / 2))


def decide_classes(valid_logits: np.ndarray, valid_labels: Sequence[int], test_logits: np.ndarray, test_labels: Sequence[int],
                   positive: Sequence[int], target_precision: float | None = None) -> dict:
    """More than two classes: a temperature fitted on validation and, when ``positive`` (class indices) names the
    classes that mean a finding, the threshold on the probability of a finding, with precision and recall at it."""
    valid_labels, test_labels = np.asarray(valid_labels), np.asarray(test_labels)
    t = temperature(valid_logits, valid_labels)
    out = {"calibration": {"method": "temperature", "temperature": t, "fitted_on": "validation", "examples": int(len(valid_labels))}}
    if not positive:
        return {**out, "threshold": None, "rule": "no class means a finding: the most probable class is the answer"}
    idx = list(positive)
    pv, pt = (softmax(x, t)[:, idx].sum(axis=1) for x in (valid_logits, test_logits))
    yv, yt = np.isin(valid_labels, idx).astype(int), np.isin(test_labels, idx).astype(int)
    threshold, rule = choose_threshold(pv, yv, target_precision)
    return {**out, "threshold": threshold, "rule": rule, "validation": at_threshold(pv, yv, threshold), "test": at_threshold(pt, yt, threshold)}


def decide(valid_margin: np.ndarray, valid_labels: Sequence[int], test_margin: np.ndarray, test_labels: Sequence[int],
           target_precision: float | None = None) -> dict:
    """Calibration and threshold fitted on validation, with precision and recall at the threshold on both splits."""
    valid_labels, test_labels = np.asarray(valid_labels), np.asarray(test_labels)
    a, b = platt(valid_margin, valid_labels)
    pv, pt = calibrated(valid_margin, a, b), calibrated(test_margin, a, b)
    threshold, rule = choose_threshold(pv, valid_labels, target_precision)
    return {
        "calibration": {"method": "platt", "a": a, "b": b, "fitted_on": "validation", "examples": int(len(valid_labels))},
        "threshold": threshold,
        "rule": rule,
        "validation": at_threshold(pv, valid_labels, threshold),
        "test": at_threshold(pt, test_labels, threshold),
    }

"""What a score means to a user: calibrated probabilities and a decision threshold, both chosen on validation.

An exported model's raw P(class 1) is whatever distillation left (a model with test ROC AUC 0.6 may put every
function near 0.5). So the export fits Platt scaling (P = sigmoid(a * margin + b), margin = logit 1 - logit 0)
on the validation split, chooses the threshold on the same split (the best F1, or the lowest threshold that
reaches a target precision), and reports precision and recall at it on validation and on test. The test split
never influences either choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avatar.runtime.model import calibrated


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

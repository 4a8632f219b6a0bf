"""Test-set scores of one round: accuracy, balanced accuracy and macro-F1 from one confusion matrix.

Written out (a bincount) rather than imported: scikit-learn is a development dependency only. The definitions follow
``sklearn.metrics`` (the tests compare): balanced accuracy is the mean recall over classes present in ``y_true``;
macro-F1 averages F1 over ``0..n_classes-1`` with 0 for a class never predicted nor present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    accuracy: float
    balanced_accuracy: float
    macro_f1: float


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` counts, rows = true class, columns = predicted class."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal non-empty 1-D shapes")
    for name, v in (("y_true", y_true), ("y_pred", y_pred)):
        if v.min() < 0 or v.max() >= n_classes:
            raise ValueError(f"{name} must hold labels in [0, {n_classes})")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> Scores:
    """Accuracy, balanced accuracy and macro-F1 of ``y_pred`` against ``y_true``."""
    cm = confusion(y_true, y_pred, n_classes).astype(np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    present = support > 0
    recall = tp[present] / support[present]
    denom = support + predicted  # F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (support + predicted)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return Scores(float(tp.sum() / cm.sum()), float(recall.mean()), float(f1.mean()))

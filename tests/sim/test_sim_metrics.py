"""Round scores against scikit-learn's definitions on small cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from raydq.sim.metrics import scores


@pytest.mark.parametrize("seed", range(6))
def test_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = 4
    y_true = rng.integers(0, n_classes, 40)
    y_pred = np.where(rng.random(40) < 0.6, y_true, rng.integers(0, n_classes, 40))
    if seed % 2:
        y_pred[y_pred == 3] = 0  # a class never predicted: its F1 is 0
    s = scores(y_true, y_pred, n_classes)
    assert s.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert s.balanced_accuracy == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    f1 = f1_score(y_true, y_pred, average="macro", labels=list(range(n_classes)), zero_division=0)
    assert s.macro_f1 == pytest.approx(f1)


def test_imbalanced_predictions_separate_the_three_scores():
    y_true = np.array([0] * 8 + [1] * 2)
    y_pred = np.zeros(10, dtype=int)  # always the frequent class
    s = scores(y_true, y_pred, 2)
    assert s.accuracy == pytest.approx(0.8)
    assert s.balanced_accuracy == pytest.approx(balanced_accuracy_score(y_true, y_pred)) == pytest.approx(0.5)
    assert s.macro_f1 == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))


def test_bad_labels_are_refused():
    with pytest.raises(ValueError, match="y_pred"):
        scores(np.array([0, 1]), np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="shapes"):
        scores(np.array([0, 1]), np.array([0]), 2)

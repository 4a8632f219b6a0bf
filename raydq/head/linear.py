"""The linear head of ARCHITECTURE §3: dropout → standardization → Linear, trained fresh each round.

Standardization is where this head departs from the paper's (dropout → BatchNorm1d(affine=False) → Linear). BatchNorm
standardizes with the statistics of the labeled batch: 10 to 200 rows in active learning, and on a long-tailed pool
rows of the frequent classes. The pool itself is known, so the default head standardizes with the mean and variance
of the whole pool (``fit(..., feature_moments=)``), trains with a smaller learning rate and weighs every labeled class
the same. Measured with ``jobs/simulate.py`` on Fashion-MNIST (5 seeds, 20 rounds; docs/results/README.md): see
"A head that knows the pool". ``standardize="batch", lr=1e-2, class_weight=None`` (``PAPER_HEAD``) is the paper's.

An estimator on scikit-learn's contract: the constructor stores its arguments, ``fit`` validates and learns, learned
state ends in ``_``. Randomness (the dropout masks) comes only from ``random_state`` through a numpy
Generator, so two fits with the same seed give the same head and no global RNG is touched.

Training is plain numpy on one BLAS thread: only the Linear layer learns, so its two gradients are written out
(checked against torch autograd in the tests). Problems this small run fastest on one thread, and multi-threaded
BLAS or torch pools crawl on a busy machine (measured here: 7 s instead of 0.4 s for 400 epochs of 210 x 1280).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raydq.estimator import check_random_state, init_params
from raydq.numerics.dropout_passes import keep_mask
from raydq.numerics.moments import FeatureMoments
from raydq.numerics.probability import log_softmax, softmax
from raydq.numerics.threads import single_thread_blas

_BN_EPS = 1e-5
_BN_MOMENTUM = 0.1
_FORMAT = "raydq.LinearHead/1"
_STANDARDIZE = ("pool", "batch")

#: The paper's head (BatchNorm on the labeled batch, AdamW at 1e-2, unweighted loss), for comparisons.
PAPER_HEAD: dict[str, Any] = {"standardize": "batch", "lr": 1e-2, "class_weight": None}


def _cross_entropy_grads(
    z: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy of ``softmax(z @ W.T + b)`` against one-hot ``Y`` (weighted by ``weights``, which sum to
    one, when given), and its gradients in ``W`` and ``b``.

    Only the Linear layer learns (BatchNorm has no affine parameters and the features are frozen), so these two
    gradients are all the backward pass there is.
    """
    log_p = log_softmax(z @ W.T + b)
    if weights is None:
        loss = float(-(Y * log_p).sum() / len(z))
        delta = (np.exp(log_p) - Y) / np.float32(len(z))
    else:
        loss = float(-(weights @ (Y * log_p).sum(axis=1)))
        delta = (np.exp(log_p) - Y) * weights[:, None]
    return loss, delta.T @ z, delta.sum(axis=0)


def balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-row weights, summing to one, that give every class present in ``y`` the same total weight: the loss of a
    class-balanced head (scikit-learn's ``class_weight="balanced"``), so the few labels of a rare class count as much
    as the many of a frequent one.

    >>> balanced_weights(np.array([0, 0, 0, 1]), 2).tolist()
    [0.1666666716337204, 0.1666666716337204, 0.1666666716337204, 0.5]
    """
    counts = np.bincount(y, minlength=n_classes)
    w = 1.0 / (counts[y] * np.count_nonzero(counts))
    return w.astype(np.float32)


class _AdamW:
    """torch.optim.AdamW's update (betas 0.9/0.999, eps 1e-8, decoupled weight decay), in place on numpy arrays."""

    def __init__(self, params: list[np.ndarray], *, lr: float, weight_decay: float) -> None:
        self.params, self.lr, self.wd = params, lr, weight_decay
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            p *= np.float32(1.0 - self.lr * self.wd)
            m += np.float32(1.0 - b1) * (g - m)
            v *= np.float32(b2)
            v += np.float32(1.0 - b2) * g * g
            p -= np.float32(self.lr / c1) * m / (np.sqrt(v / np.float32(c2)) + np.float32(eps))


class LinearHead:
    """Linear probe on frozen embeddings, with the paper's input dropout, standardized by the pool's statistics.

    Parameters
    ----------
    n_classes : int
        Number of classes; labels are ``0 .. n_classes - 1`` (classes absent from the labeled set are fine).
    dropout : float, default=0.75
        Dropout rate on the input features while training.
    lr : float, default=1e-3
        AdamW's learning rate (the paper's BatchNorm head trains at 1e-2; with the pool's statistics 1e-3 does better).
    weight_decay : float, default=1e-2
        AdamW's decoupled weight decay.
    max_epochs : int, default=400
        Upper bound on full-batch epochs.
    patience : int, default=20
        Stop when the training cross-entropy has not improved by ``min_delta`` for this many epochs.
    min_delta : float, default=1e-3
        Smallest decrease of the training loss that counts as an improvement.
    class_weight : None or "balanced", default="balanced"
        ``"balanced"``: every labeled class weighs the same in the loss, however many labels it has (a long-tailed
        pool gives a frequent class most labels, and an unweighted head then calls rare-class rows frequent).
    standardize : "pool" or "batch", default="pool"
        ``"pool"``: inputs are standardized with fixed statistics, those passed to ``fit`` as ``feature_moments``
        (the whole pool's), else those of ``X``. ``"batch"``: the paper's BatchNorm1d(affine=False) in training
        mode, batch statistics of the dropped-out labeled rows, running averages at inference.
    random_state : None, int or numpy Generator
        Seeds the dropout masks (the weights start at zero).

    Attributes
    ----------
    n_features_in_ : int
    n_epochs_ : int
        Epochs actually run (fewer than ``max_epochs`` when early stopping fired).
    running_mean_, running_var_ : ndarray of shape (n_features_in_,)
        The standardization used at inference (the pool's statistics, or BatchNorm's running averages).
    coef_ : ndarray of shape (n_classes, n_features_in_), intercept_ : ndarray of shape (n_classes,)
        The Linear layer (applied to the standardized input, ``transform(X)``).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.r_[np.zeros((5, 4)), np.ones((5, 4))].astype(np.float32); y = np.r_[[0] * 5, [1] * 5]
    >>> LinearHead(2, random_state=0).fit(X, y).predict(X).tolist() == y.tolist()
    True
    """

    def __init__(
        self,
        n_classes: int,
        *,
        dropout: float = 0.75,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        max_epochs: int = 400,
        patience: int = 20,
        min_delta: float = 1e-3,
        class_weight: str | None = "balanced",
        standardize: str = "pool",
        random_state: Any = None,
    ) -> None:
        self.n_classes = n_classes
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.min_delta = min_delta
        self.class_weight = class_weight
        self.standardize = standardize
        self.random_state = random_state

    # -- scikit-learn plumbing -------------------------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return init_params(self)

    def set_params(self, **params: Any) -> LinearHead:
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for LinearHead; valid: {sorted(valid)}")
            setattr(self, name, value)
        return self

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` as a caller configures every head it will fit (a service config, ``--head-params``): known
        names with valid values, and neither of the two the caller sets per fit. Raises ValueError naming the
        parameter; returns ``params``."""
        reserved = sorted({"n_classes", "random_state"} & set(params))
        if reserved:
            raise ValueError(f"{reserved} must not be set: they are set for every fit")
        cls(2).set_params(**params)._validate_params()  # set_params names an unknown parameter
        return params

    def _validate_params(self) -> None:
        if not isinstance(self.n_classes, int | np.integer) or self.n_classes < 1:
            raise ValueError(f"n_classes must be a positive integer, got {self.n_classes!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if float(self.lr) <= 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if float(self.weight_decay) < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not isinstance(self.max_epochs, int | np.integer) or self.max_epochs < 1:
            raise ValueError(f"max_epochs must be a positive integer, got {self.max_epochs!r}")
        if not isinstance(self.patience, int | np.integer) or self.patience < 1:
            raise ValueError(f"patience must be a positive integer, got {self.patience!r}")
        if float(self.min_delta) < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta!r}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {self.class_weight!r}")
        if self.standardize not in _STANDARDIZE:
            raise ValueError(f"standardize must be one of {list(_STANDARDIZE)}, got {self.standardize!r}")

    # -- training --------------------------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray, *, feature_moments: FeatureMoments | None = None) -> LinearHead:
        """Train a fresh head on ``(X, y)`` with full-batch AdamW and early stopping on the training loss.

        ``feature_moments``: the pool's (all rows, labeled or not); with ``standardize="pool"`` the head standardizes
        with their mean and variance. Ignored with ``standardize="batch"``.
        """
        self._validate_params()
        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.asarray(y)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"X must be a non-empty 2-D array, got shape {X.shape}")
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= self.n_classes:
            raise ValueError(f"y must hold integer labels in [0, {self.n_classes}), got {np.unique(y)[:10]}")
        if feature_moments is not None and feature_moments.total.shape != (X.shape[1],):
            raise ValueError(f"feature_moments are of {feature_moments.total.shape} features, X has {X.shape[1]}")
        if self.standardize == "pool":
            stats = feature_moments if feature_moments is not None else FeatureMoments.of(X)
            fixed = (stats.mean, stats.var)
        else:
            fixed = None
        with single_thread_blas():
            self._fit(X, y, fixed)
        return self

    def _fit(self, X: np.ndarray, y: np.ndarray, fixed: tuple[np.ndarray, np.ndarray] | None) -> None:
        rng = check_random_state(self.random_state)
        n, d = X.shape
        c = int(self.n_classes)
        # Zero, not torch's uniform init: a class with no label starts level and is only ever pushed down (from a
        # random init, a head stopped early kept calling training rows a class it was never shown).
        W = np.zeros((c, d), dtype=np.float32)
        b = np.zeros(c, dtype=np.float32)
        opt = _AdamW([W, b], lr=float(self.lr), weight_decay=float(self.weight_decay))
        Y = np.eye(c, dtype=np.float32)[y]
        weights = balanced_weights(y, c) if self.class_weight == "balanced" else None
        keep = 1.0 - float(self.dropout)
        if fixed is None:
            running_mean, running_var = np.zeros(d, dtype=np.float32), np.ones(d, dtype=np.float32)
        else:
            running_mean, running_var = fixed
            inv_sd = (1.0 / np.sqrt(running_var + np.float32(_BN_EPS))).astype(np.float32)
        best, wait, epoch = np.inf, 0, 0
        for epoch in range(1, int(self.max_epochs) + 1):  # noqa: B007 (epoch is read after the loop)
            xin = X * keep_mask(rng, n, d, keep) * np.float32(1.0 / keep) if keep < 1.0 else X
            if fixed is not None:  # the pool's statistics: the same map in training and at inference
                z = (xin - running_mean) * inv_sd
            elif n > 1:  # BatchNorm in training mode; one row has no batch statistics and trains against the identity
                mean, var = xin.mean(axis=0), xin.var(axis=0)
                z = (xin - mean) / np.sqrt(var + np.float32(_BN_EPS))
                running_mean += np.float32(_BN_MOMENTUM) * (mean - running_mean)
                running_var += np.float32(_BN_MOMENTUM) * (var * np.float32(n / (n - 1)) - running_var)
            else:
                z = (xin - running_mean) / np.sqrt(running_var + np.float32(_BN_EPS))
            loss, gW, gb = _cross_entropy_grads(z, Y, W, b, weights)
            opt.step([gW, gb])
            if loss < best - float(self.min_delta):
                best, wait = loss, 0
            else:
                wait += 1
                if wait >= self.patience:
                    break
        self.n_features_in_ = d
        self.n_epochs_ = epoch
        self.running_mean_ = running_mean
        self.running_var_ = running_var
        self.coef_ = W
        self.intercept_ = b

    # -- inference -------------------------------------------------------------------------------------------------
    def _check_fitted(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise ValueError("this LinearHead is not fitted yet; call fit(X, y) first")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (n, {self.n_features_in_}), got {X.shape}")
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The standardized embedding (eval mode) the head's Linear layer reads: the space DropQuery clusters in."""
        X = self._check_fitted(X)
        return ((X - self.running_mean_) / np.sqrt(self.running_var_ + _BN_EPS)).astype(np.float32, copy=False)

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` with ``logits = X @ W + b``: standardization (eval mode) and Linear folded into one map.

        ``W`` has shape (n_features_in_, n_classes), ``b`` shape (n_classes,), both float32. Dropout passes then
        cost one matmul each.
        """
        self._check_fitted(np.zeros((0, self.n_features_in_), dtype=np.float32))
        inv = 1.0 / np.sqrt(self.running_var_.astype(np.float64) + _BN_EPS)
        W = (self.coef_.astype(np.float64) * inv).T
        b = self.intercept_.astype(np.float64) - W.T @ self.running_mean_.astype(np.float64)
        return np.ascontiguousarray(W, dtype=np.float32), b.astype(np.float32)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits of shape (n_samples, n_classes)."""
        X = self._check_fitted(X)
        W, b = self.affine()
        return X @ W + b

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = self.decision_function(X)
        return softmax(logits, out=logits)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.decision_function(X).argmax(axis=1)

    # -- shipping between actors / over HTTP -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters and learned state (float32 values round-trip exactly)."""
        d: dict[str, Any] = {"format": _FORMAT, "params": self.get_params()}
        rs = d["params"]["random_state"]
        if rs is not None and not isinstance(rs, int | np.integer):
            d["params"]["random_state"] = None  # a Generator does not travel; the learned state does
        elif rs is not None:
            d["params"]["random_state"] = int(rs)
        if hasattr(self, "coef_"):
            d["state"] = {
                "n_features_in": int(self.n_features_in_),
                "n_epochs": int(self.n_epochs_),
                "running_mean": self.running_mean_.tolist(),
                "running_var": self.running_var_.tolist(),
                "coef": self.coef_.tolist(),
                "intercept": self.intercept_.tolist(),
            }
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearHead:
        """Rebuild a head written by ``to_dict``."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"not a serialised LinearHead (expected format {_FORMAT!r})")
        params = dict(d["params"])
        head = cls(params.pop("n_classes"), **params)
        state = d.get("state")
        if state is not None:
            head.n_features_in_ = int(state["n_features_in"])
            head.n_epochs_ = int(state["n_epochs"])
            head.running_mean_ = np.asarray(state["running_mean"], dtype=np.float32)
            head.running_var_ = np.asarray(state["running_var"], dtype=np.float32)
            head.coef_ = np.asarray(state["coef"], dtype=np.float32).reshape(head.n_classes, head.n_features_in_)
            head.intercept_ = np.asarray(state["intercept"], dtype=np.float32)
        return head

    def __repr__(self) -> str:
        return (
            f"LinearHead(n_classes={self.n_classes}, standardize={self.standardize!r}, dropout={self.dropout}, "
            f"random_state={self.random_state})"
        )

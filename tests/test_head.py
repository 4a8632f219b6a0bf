"""The linear head: early stopping, determinism, the folded affine map, and shipping as JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from raydq.head import LinearHead


def _blobs(n_per=30, d=16, c=3, sep=6.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(c, d)) * sep
    X = np.concatenate([centers[k] + rng.normal(size=(n_per, d)) for k in range(c)]).astype(np.float32)
    y = np.repeat(np.arange(c), n_per)
    return X, y


def test_early_stopping_fires_before_max_epochs_on_separable_data():
    X, y = _blobs()
    head = LinearHead(3, max_epochs=400, random_state=0).fit(X, y)
    assert 1 <= head.n_epochs_ < 400
    assert (head.predict(X) == y).mean() > 0.95


def test_patience_bounds_the_run_after_the_last_improvement():
    X, y = _blobs()
    short = LinearHead(3, patience=2, random_state=0).fit(X, y)
    long = LinearHead(3, patience=50, random_state=0).fit(X, y)
    assert short.n_epochs_ < long.n_epochs_


def test_deterministic_under_a_seed_and_different_across_seeds():
    X, y = _blobs()
    a = LinearHead(3, random_state=7).fit(X, y)
    b = LinearHead(3, random_state=7).fit(X, y)
    c = LinearHead(3, random_state=8).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.n_epochs_ == b.n_epochs_
    assert not np.array_equal(a.coef_, c.coef_)


def test_fit_leaves_the_global_rngs_alone():
    X, y = _blobs()
    torch.manual_seed(123)
    np.random.seed(123)
    expected = torch.rand(3), np.random.random(3)
    torch.manual_seed(123)
    np.random.seed(123)
    LinearHead(3, random_state=0).fit(X, y)
    assert torch.equal(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.random(3), expected[1])


def test_affine_map_equals_batchnorm_then_linear():
    X, y = _blobs()
    head = LinearHead(3, random_state=0).fit(X, y)
    W, b = head.affine()
    assert W.shape == (X.shape[1], 3) and b.shape == (3,)
    expected = head.transform(X) @ head.coef_.T + head.intercept_
    np.testing.assert_allclose(X @ W + b, expected, rtol=1e-4, atol=1e-4)
    z = head.transform(X)
    np.testing.assert_allclose(z, (X - head.running_mean_) / np.sqrt(head.running_var_ + 1e-5), rtol=1e-5)


def test_predict_proba_rows_sum_to_one_and_absent_classes_are_fine():
    X, y = _blobs(c=2)
    head = LinearHead(5, random_state=0).fit(X, y)  # classes 2..4 never seen
    P = head.predict_proba(X)
    assert P.shape == (len(X), 5)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)
    assert set(np.unique(head.predict(X))) <= {0, 1}


def test_the_head_standardizes_with_the_pools_moments_in_training_and_at_inference():
    """The pool (labeled or not) sets the standardization: a head fitted on a few rows of a shifted pool keeps the
    pool's mean and variance, not those of its labeled rows."""
    from raydq.numerics.moments import FeatureMoments

    X, y = _blobs(n_per=200)
    pool = X * 2.0 + 1.0
    moments = FeatureMoments.of(pool)
    few = np.r_[0:5, 200:205, 400:405]
    head = LinearHead(3, random_state=0).fit(pool[few], y[few], feature_moments=moments)
    np.testing.assert_array_equal(head.running_mean_, moments.mean)
    np.testing.assert_array_equal(head.running_var_, moments.var)
    np.testing.assert_allclose(head.transform(pool), (pool - moments.mean) / np.sqrt(moments.var + 1e-5), rtol=1e-5)
    assert (head.predict(pool) == y).mean() > 0.95
    own = LinearHead(3, random_state=0).fit(pool[few], y[few])  # no moments: its own rows' statistics
    np.testing.assert_allclose(own.running_mean_, pool[few].mean(axis=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="feature_moments"):
        LinearHead(3).fit(pool[few], y[few], feature_moments=FeatureMoments.of(pool[:, :3]))
    with pytest.raises(ValueError, match="standardize"):
        LinearHead(3, standardize="layer").fit(pool[few], y[few])


def test_single_example_trains():
    head = LinearHead(2, random_state=0).fit(np.ones((1, 4), np.float32), np.array([1]))
    assert head.predict(np.ones((1, 4), np.float32))[0] == 1


def test_round_trip_through_json():
    X, y = _blobs()
    head = LinearHead(3, dropout=0.5, random_state=3).fit(X, y)
    again = LinearHead.from_dict(json.loads(json.dumps(head.to_dict())))
    assert again.get_params() == head.get_params()
    assert again.n_epochs_ == head.n_epochs_
    np.testing.assert_array_equal(again.predict_proba(X), head.predict_proba(X))
    unfitted = LinearHead.from_dict(LinearHead(4).to_dict())
    assert unfitted.n_classes == 4 and not hasattr(unfitted, "coef_")


def test_constructor_stores_only_and_sklearn_clone_works():
    from sklearn.base import clone

    head = LinearHead(3, dropout=0.5, random_state=1)
    assert not hasattr(head, "coef_")
    copy = clone(head)
    assert copy.get_params() == head.get_params()


@pytest.mark.parametrize(
    ("params", "field"),
    [({"dropout": 1.0}, "dropout"), ({"max_epochs": 0}, "max_epochs"), ({"patience": 0}, "patience")],
)
def test_bad_parameters_fail_in_fit_naming_the_field(params, field):
    X, y = _blobs()
    with pytest.raises(ValueError, match=field):
        LinearHead(3, **params).fit(X, y)


def test_bad_labels_and_unfitted_use_raise():
    X, y = _blobs()
    with pytest.raises(ValueError, match="y must"):
        LinearHead(2).fit(X, y)  # label 2 outside [0, 2)
    with pytest.raises(ValueError, match="not fitted"):
        LinearHead(3).predict(X)


def test_hand_written_gradients_match_torch_autograd():
    from raydq.head.linear import _cross_entropy_grads

    rng = np.random.default_rng(0)
    z = rng.normal(size=(7, 5)).astype(np.float32)
    y = rng.integers(0, 3, 7)
    W = rng.normal(size=(3, 5)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    loss, gW, gb = _cross_entropy_grads(z, np.eye(3, dtype=np.float32)[y], W, b)
    Wt = torch.from_numpy(W).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    ref = torch.nn.functional.cross_entropy(torch.from_numpy(z) @ Wt.T + bt, torch.from_numpy(y))
    ref.backward()
    assert loss == pytest.approx(float(ref.detach()), rel=1e-5)
    np.testing.assert_allclose(gW, Wt.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gb, bt.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_balanced_weights_match_torch_class_weighted_cross_entropy():
    """The balanced loss is torch's cross-entropy with per-class weights n / (classes present x count)."""
    from raydq.head.linear import _cross_entropy_grads, balanced_weights

    rng = np.random.default_rng(1)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 3])  # class 2 absent: it gets no weight and takes none from the others
    z = rng.normal(size=(len(y), 5)).astype(np.float32)
    W = rng.normal(size=(4, 5)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    w = balanced_weights(y, 4)
    assert w.sum() == pytest.approx(1.0) and w[y == 0].sum() == pytest.approx(w[y == 3].sum())
    loss, gW, gb = _cross_entropy_grads(z, np.eye(4, dtype=np.float32)[y], W, b, w)
    counts = np.bincount(y, minlength=4)
    per_class = np.where(counts > 0, len(y) / (3 * np.maximum(counts, 1)), 0.0).astype(np.float32)
    Wt = torch.from_numpy(W).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    ref = torch.nn.functional.cross_entropy(
        torch.from_numpy(z) @ Wt.T + bt, torch.from_numpy(y), weight=torch.from_numpy(per_class)
    )
    ref.backward()
    assert loss == pytest.approx(float(ref.detach()), rel=1e-5)
    np.testing.assert_allclose(gW, Wt.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gb, bt.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_a_balanced_head_calls_more_rare_class_rows_rare():
    """Two overlapping Gaussian classes, 200 labels of one and 5 of the other: the unweighted head calls most rows of
    the rare class frequent; the balanced head finds more of them (and the same head on balanced labels is unchanged
    by the option, up to float rounding)."""
    rng = np.random.default_rng(0)
    d = 16
    shift = np.zeros(d, dtype=np.float32)
    shift[0] = 1.5

    def draw(n: int, c: int) -> np.ndarray:
        return (rng.normal(size=(n, d)) + c * shift).astype(np.float32)

    X = np.r_[draw(200, 0), draw(5, 1)]
    y = np.r_[[0] * 200, [1] * 5]
    test = draw(1000, 1)
    plain = LinearHead(2, class_weight=None, random_state=0).fit(X, y)
    balanced = LinearHead(2, class_weight="balanced", random_state=0).fit(X, y)
    assert (balanced.predict(test) == 1).mean() > (plain.predict(test) == 1).mean() + 0.1
    Xb, yb = np.r_[draw(50, 0), draw(50, 1)], np.r_[[0] * 50, [1] * 50]
    np.testing.assert_allclose(
        LinearHead(2, class_weight="balanced", random_state=0).fit(Xb, yb).coef_,
        LinearHead(2, class_weight=None, random_state=0).fit(Xb, yb).coef_, rtol=1e-3, atol=1e-4,
    )  # fmt: skip
    with pytest.raises(ValueError, match="class_weight"):
        LinearHead(2, class_weight="inverse").fit(X, y)


def test_adamw_steps_match_torch():
    from raydq.head.linear import _AdamW

    rng = np.random.default_rng(1)
    p = rng.normal(size=(4, 3)).astype(np.float32)
    pt = torch.from_numpy(p.copy()).requires_grad_()
    opt = _AdamW([p], lr=1e-2, weight_decay=1e-2)
    ref = torch.optim.AdamW([pt], lr=1e-2, weight_decay=1e-2)
    for _ in range(5):
        g = rng.normal(size=(4, 3)).astype(np.float32)
        opt.step([g])
        pt.grad = torch.from_numpy(g)
        ref.step()
    np.testing.assert_allclose(p, pt.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_batchnorm_statistics_match_torch_in_training_mode():
    """``standardize="batch"`` (the paper's head) without dropout: one epoch's running statistics equal torch's
    BatchNorm1d update, whatever pool moments are passed."""
    from raydq.numerics.moments import FeatureMoments

    X, y = _blobs()
    head = LinearHead(3, standardize="batch", dropout=0.0, max_epochs=1, random_state=0)
    head.fit(X, y, feature_moments=FeatureMoments.of(X * 3.0 + 7.0))
    bn = torch.nn.BatchNorm1d(X.shape[1], affine=False)
    bn.train()
    bn(torch.from_numpy(X))
    np.testing.assert_allclose(head.running_mean_, bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head.running_var_, bn.running_var.numpy(), rtol=1e-5, atol=1e-6)

"""The summary's imbalance columns: means over rounds and seeds, and the round by which every class is labeled."""

from __future__ import annotations

import pytest

from raydq.sim import RoundResult, format_table, summarise


def _run(seed: int, balanced: list[float], classes: list[int]) -> list[RoundResult]:
    return [
        RoundResult("centroid>dropquery", seed, r, 3 * (r + 1), b + 0.1, 0.5, b, b - 0.1, c)
        for r, (b, c) in enumerate(zip(balanced, classes, strict=True))
    ]


def test_summary_means_and_first_round_with_every_class():
    rows = _run(1, [0.2, 0.4, 0.6, 0.8], [2, 2, 3, 3]) + _run(2, [0.4, 0.4, 0.4, 0.4], [1, 2, 2, 2])
    (t,) = summarise(rows, n_classes=3)
    assert t["seeds"] == 2 and t["last_round"] == 3
    assert t["balanced"] == pytest.approx((0.5 + 0.4) / 2)
    assert t["balanced_std"] == pytest.approx(0.05)
    assert t["mean"] == pytest.approx(0.55)
    assert t["macro_f1"] == pytest.approx(0.35)
    assert t["never_found"] == 1
    assert t["all_found"] == pytest.approx((2 + 4) / 2)  # seed 2 never: counted as the round after the last
    assert "| ≥ 3.0 (1 never) |" in format_table([t])


def test_every_seed_finding_every_class_prints_the_plain_mean():
    rows = _run(1, [0.5] * 3, [3, 3, 3]) + _run(2, [0.5] * 3, [1, 3, 3])
    (t,) = summarise(rows, n_classes=3)
    assert (t["all_found"], t["never_found"]) == (0.5, 0)
    assert "| 0.5 |" in format_table([t])

"""jobs/simulate.py on a tiny synthetic store: CSV, plot, summary, resumability."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raydq.pool import Manifest, write_manifest
from raydq.sim import StrategyPair, read_results, run_one

ROOT = Path(__file__).resolve().parents[1]


def _load_job():
    spec = importlib.util.spec_from_file_location("simulate_job", ROOT / "jobs" / "simulate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["simulate_job"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _write_store(directory: Path, X: np.ndarray, y: np.ndarray, prefix: str) -> Path:
    directory.mkdir(parents=True)
    table = pa.table(
        {
            "id": [f"{prefix}{i:05d}" for i in range(len(X))],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel(), pa.float32()), X.shape[1]),
            "label": pa.array(y, pa.int64()),
        }
    )
    pq.write_table(table, directory / "part-0.parquet")
    write_manifest(directory, Manifest(model="synthetic", weights="none", dim=X.shape[1], num_rows=len(X)))
    return directory


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    rng = np.random.default_rng(0)
    c, d = 3, 16
    centers = rng.normal(size=(c, d)) * 2
    yp, yt = rng.integers(0, c, 300), rng.integers(0, c, 150)
    Xp = (centers[yp] + rng.normal(size=(300, d))).astype(np.float32)
    Xt = (centers[yt] + rng.normal(size=(150, d))).astype(np.float32)
    root = tmp_path_factory.mktemp("sim")
    return _write_store(root / "pool", Xp, yp, "p"), _write_store(root / "test", Xt, yt, "t")


def _argv(pool, test, out, strategies="centroid>dropquery,random"):
    return [
        "--pool", str(pool), "--test", str(test), "--output", str(out), "--strategies", strategies,
        "--seeds", "1,2", "--rounds", "3", "--max-epochs", "60", "--no-progress",
    ]  # fmt: skip


def test_simulation_writes_csv_plot_and_resumes(stores, tmp_path, monkeypatch, capsys):
    job = _load_job()
    out = tmp_path / "run"
    table = job.main(job.parse_config(_argv(*stores, out)))
    rows = read_results(out / "results.csv")
    assert len(rows) == 2 * 2 * 4  # strategies x seeds x rounds 0..3
    assert {r.strategy for r in rows} == {"centroid>dropquery", "random>random"}
    assert sorted({r.labeled for r in rows}) == [3, 6, 9, 12]  # budget = classes, + classes per round
    assert all(0.0 <= r.test_accuracy <= 1.0 and r.query_seconds >= 0 for r in rows)
    assert (out / "accuracy.png").stat().st_size > 1000
    assert {t["strategy"] for t in table} == {"centroid>dropquery", "random>random"}
    assert "| centroid>dropquery | 2 |" in capsys.readouterr().out

    # resume: nothing left to do, so no run may start
    def refuse(*a, **k):
        raise AssertionError("a completed run was run again")

    monkeypatch.setattr("raydq.sim.run_one", refuse)
    job.main(job.parse_config(_argv(*stores, out)))
    assert len(read_results(out / "results.csv")) == 16


def test_head_params_reach_the_head_and_bad_ones_are_refused(stores, tmp_path):
    job = _load_job()
    argv = _argv(*stores, tmp_path / "run")
    config = job.parse_config([*argv, "--head-params", '{"class_weight": "balanced", "dropout": 0.5}'])
    assert config.head_params == {"class_weight": "balanced", "dropout": 0.5, "max_epochs": 60}
    for bad, says in (('{"class_weight": "inverse"}', "class_weight"), ('{"depth": 2}', "depth"), ("[1]", "object"),
                      ("{", "JSON")):  # fmt: skip
        with pytest.raises(ValueError, match=says):
            job.parse_config([*argv, "--head-params", bad])


def test_resume_redoes_only_missing_runs(stores, tmp_path):
    job = _load_job()
    out = tmp_path / "run"
    job.main(job.parse_config(_argv(*stores, out, strategies="random")))
    path = out / "results.csv"
    with path.open() as f:
        kept = [r for r in csv.DictReader(f) if not (r["seed"] == "2" and r["round"] == "3")]  # an unfinished run
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(kept[0]))
        w.writeheader()
        w.writerows(kept)
    before = {(r.seed, r.round): r.test_accuracy for r in read_results(path) if r.seed == 1}
    job.main(job.parse_config(_argv(*stores, out, strategies="random")))
    rows = read_results(path)
    assert sorted((r.seed, r.round) for r in rows if r.seed == 1) == [(1, i) for i in range(4)]
    assert {(r.seed, r.round): r.test_accuracy for r in rows if r.seed == 1} == before
    assert {r.round for r in rows if r.seed == 2} == {0, 1, 2, 3}


def test_runs_are_deterministic_per_seed(stores):
    from raydq.pool import load_pool

    pool, test = load_pool(stores[0]), load_pool(stores[1])
    kw = dict(X=pool.X, y_true=pool.labels, X_test=test.X, y_test=test.labels, n_classes=3, n_rounds=2)
    pair = StrategyPair.parse("centroid>dropquery")
    a = [r.test_accuracy for r in run_one(pair, 5, **kw)]
    b = [r.test_accuracy for r in run_one(pair, 5, **kw)]
    assert a == b


@pytest.mark.parametrize(
    ("spec", "message"),
    [("dropquery>random", "cannot be a cold start"), ("random>nope", "unknown strategy"), ("a>b>c", "cold>query")],
)
def test_bad_strategy_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        StrategyPair.parse(spec)


def test_strategy_options_reach_the_constructors():
    pair = StrategyPair.parse("centroid[n_init=2; kmeans_niter=5]>dropquery[kmeans_niter=10;relax=false]")
    cold, query = pair.build(np.random.default_rng(0))
    assert (cold.n_init, cold.kmeans_niter) == (2, 5)
    assert (query.kmeans_niter, query.relax, query.dropout) == (10, False, 0.75)
    assert str(pair) == "centroid[n_init=2; kmeans_niter=5]>dropquery[kmeans_niter=10;relax=false]"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("centroid[nope=1]>dropquery", "not option=value"),
        ("centroid[n_init]>dropquery", "not option=value"),
        ("centroid[random_state=3]>dropquery", "not option=value"),
        ("centroid[n_init=2>dropquery", "must look like"),
    ],
)
def test_bad_strategy_options_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        StrategyPair.parse(spec)


def test_bad_arguments_name_the_flag(stores, tmp_path):
    job = _load_job()
    with pytest.raises(ValueError, match="--seeds"):
        job.parse_config(["--pool", "p", "--test", "t", "--seeds", "a,b"])
    with pytest.raises(ValueError, match="--per-round"):
        job.parse_config(["--pool", "p", "--test", "t", "--per-round", "0"])
    with pytest.raises(ValueError, match="--imbalance"):
        job.parse_config(["--pool", "p", "--test", "t", "--imbalance", "0.5"])


def test_imbalanced_simulation_records_class_metrics(stores, tmp_path, capsys):
    from raydq.pool import load_pool

    job = _load_job()
    out = tmp_path / "run"
    argv = [*_argv(*stores, out, strategies="random,centroid>margin"), "--imbalance", "5"]
    table = job.main(job.parse_config(argv))
    rows = read_results(out / "results.csv")
    labels = load_pool(stores[0]).labels
    for seed in (1, 2):
        subset = job.pool_rows(labels, 5.0, seed)
        counts = np.sort(np.bincount(labels[subset]))
        assert counts[-1] / counts[0] == pytest.approx(5.0, rel=0.1)
        for strategy in ("random>random", "centroid>margin"):
            seen = [
                r.classes_labeled
                for r in sorted(rows, key=lambda r: r.round)
                if (r.seed, r.strategy) == (seed, strategy)
            ]
            assert len(seen) == 4 and seen[0] >= 1 and (np.diff(seen) >= 0).all() and seen[-1] <= 3
    assert not np.array_equal(job.pool_rows(labels, 5.0, 1), job.pool_rows(labels, 5.0, 2))
    assert all(0 <= r.balanced_accuracy <= 1 and 0 <= r.macro_f1 <= 1 for r in rows)
    for t in table:
        assert 0 <= t["balanced"] <= 1 and 0 <= t["macro_f1"] <= 1
        assert 0 <= t["all_found"] <= 4 and 0 <= t["never_found"] <= t["seeds"]
    printed = capsys.readouterr().out
    assert "mean balanced accuracy" in printed and "every class by round" in printed

"""Simulate active learning on an embedding store with true labels: ``python jobs/simulate.py --pool DIR --test DIR``.

The paper's protocol: round 0 labels ``--initial-budget`` rows (default: the number of classes) chosen by a cold
start, then ``--rounds`` rounds of ``--per-round`` rows (default: the number of classes) chosen by a query strategy;
after every round a fresh head is trained and scored on the test store. Strategies are ``cold>query`` pairs, e.g.
``centroid>dropquery,random>random``; either side may set constructor options,
``centroid[n_init=5;kmeans_niter=100]``. ``--imbalance R`` first subsamples the pool, per seed, to a long-tailed
class profile whose largest class has R times the rows of its smallest (``raydq.sim.imbalance``); the test store
stays as it is. Writes ``<output>/results.csv`` (strategy, seed, round, labeled, test_accuracy, query_seconds,
balanced_accuracy, macro_f1, classes_labeled), ``<output>/accuracy.png`` (mean ± std over seeds) and prints the
summary table (mean accuracy, balanced accuracy, macro-F1, the round by which every class has a label).
Resumable: runs (strategy, seed) already complete in the CSV are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_STRATEGIES = (
    "centroid>dropquery,random>dropquery,random>random,centroid>random,random>margin,random>entropy,"
    "random>least_confidence,random>bald,random>powerbald,random>coreset,random>badge,typiclust>typiclust,"
    "probcover>probcover"
)


@dataclass(frozen=True)
class SimulateConfig:
    pool: Path
    test: Path
    output: Path
    strategies: list[str]
    seeds: list[int]
    rounds: int = 20
    initial_budget: int | None = None
    per_round: int | None = None
    n_classes: int | None = None
    imbalance: float | None = None
    progress: bool = True
    head_params: dict = field(default_factory=dict)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool", required=True, type=Path, help="embedding store to select from (needs true labels)")
    p.add_argument("--test", required=True, type=Path, help="embedding store to score on (needs true labels)")
    p.add_argument("--output", type=Path, default=Path("runs/simulate"), help="folder for results.csv, accuracy.png")
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES, help="comma-separated cold>query pairs")
    p.add_argument("--seeds", default="1,10,100,1000,10000", help="comma-separated integer seeds")
    p.add_argument("--rounds", type=int, default=20, help="query rounds after round 0")
    p.add_argument("--initial-budget", type=int, default=None, help="labels in round 0 (default: number of classes)")
    p.add_argument("--per-round", type=int, default=None, help="labels per query round (default: number of classes)")
    p.add_argument("--n-classes", type=int, default=None, help="default: from the manifest, else max label + 1")
    p.add_argument("--max-epochs", type=int, default=None, help="override the head's max_epochs")
    p.add_argument(
        "--head-params",
        default=None,
        help="LinearHead parameters as JSON, for every strategy; the paper's head is "
        '\'{"standardize": "batch", "lr": 0.01, "class_weight": null}\' (use a separate '
        "--output per setting: the CSV does not record it)",
    )
    p.add_argument(
        "--imbalance",
        type=float,
        default=None,
        help="subsample the pool (per seed) to a long-tailed profile, largest class R times the smallest "
        "(use a separate --output per R: the CSV does not record it)",
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar")
    return p


def parse_config(argv: list[str] | None = None) -> SimulateConfig:
    args = build_parser().parse_args(argv)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    if not strategies or not seeds:
        raise ValueError("--strategies and --seeds must each name at least one")
    if args.rounds < 0:
        raise ValueError(f"--rounds must be >= 0, got {args.rounds}")
    for name, value in (
        ("--initial-budget", args.initial_budget),
        ("--per-round", args.per_round),
        ("--n-classes", args.n_classes),
    ):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be positive, got {value}")
    if args.imbalance is not None and not args.imbalance >= 1:
        raise ValueError(f"--imbalance must be >= 1, got {args.imbalance}")
    head_params = _head_params(args.head_params)
    if args.max_epochs:
        head_params["max_epochs"] = args.max_epochs
    return SimulateConfig(
        pool=args.pool,
        test=args.test,
        output=args.output,
        strategies=strategies,
        seeds=seeds,
        rounds=args.rounds,
        initial_budget=args.initial_budget,
        per_round=args.per_round,
        n_classes=args.n_classes,
        imbalance=args.imbalance,
        progress=args.progress,
        head_params=head_params,
    )


def _head_params(text: str | None) -> dict:
    """``--head-params``: a JSON object of LinearHead parameters, checked here (not after the first round)."""
    from raydq.head import LinearHead

    if not text:
        return {}
    try:
        params = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--head-params must be a JSON object: {e}") from None
    if not isinstance(params, dict):
        raise ValueError(f"--head-params must be a JSON object, got {text!r}")
    try:
        return LinearHead.check_params(params)
    except ValueError as e:
        raise ValueError(f"--head-params: {e}") from None


def _labeled_store(directory: Path, what: str):
    from raydq.pool import load_pool

    pool = load_pool(directory)
    if pool.labels is None or (pool.labels < 0).any():
        raise ValueError(f"--{what} {directory}: every row needs a true label for a simulation")
    return pool


def pool_rows(labels, imbalance: float | None, seed: int):
    """The pool rows a run with ``seed`` selects from: None for all of them, else its seeded long-tailed subset."""
    import numpy as np

    from raydq.sim.imbalance import long_tail_subset

    if imbalance is None:
        return None
    return long_tail_subset(labels, imbalance, random_state=np.random.default_rng([seed, 0x1B]))


def main(config: SimulateConfig) -> list[dict]:
    import numpy as np
    from tqdm import tqdm

    from raydq.cluster import kmeans_backend_name
    from raydq.sim import (
        StrategyPair,
        append_results,
        completed_runs,
        format_table,
        plot_results,
        read_results,
        run_one,
        summarise,
    )

    pairs = [StrategyPair.parse(s) for s in config.strategies]
    pool = _labeled_store(config.pool, "pool")
    test = _labeled_store(config.test, "test")
    if pool.dim != test.dim:
        raise ValueError(f"pool dim {pool.dim} != test dim {test.dim}: the stores come from different encoders")
    n_classes = config.n_classes
    if n_classes is None:
        names = pool.manifest.class_names if pool.manifest else None
        n_classes = len(names) if names else int(max(pool.labels.max(), test.labels.max())) + 1
    csv_path = config.output / "results.csv"
    done = completed_runs(read_results(csv_path), config.rounds)
    todo = [(p, s) for p in pairs for s in config.seeds if (str(p), s) not in done]
    print(
        f"pool {len(pool)} x {pool.dim}, test {len(test)}, {n_classes} classes, k-means: {kmeans_backend_name()}; "
        f"{len(todo)} of {len(pairs) * len(config.seeds)} runs to do",
        file=sys.stderr,
    )
    subsets = {seed: pool_rows(pool.labels, config.imbalance, seed) for seed in config.seeds}
    for seed, rows in subsets.items():
        if rows is not None:
            counts = np.bincount(pool.labels[rows], minlength=n_classes).tolist()
            print(f"seed {seed}: imbalance {config.imbalance:g}, pool rows per class {counts}", file=sys.stderr)
    bar = tqdm(total=len(todo) * (config.rounds + 1), disable=not config.progress, unit="round")
    for pair, seed in todo:
        bar.set_description(f"{pair} seed {seed}")
        rows = []
        subset = subsets[seed]
        for row in run_one(
            pair,
            seed,
            X=pool.X if subset is None else pool.X[subset],
            y_true=pool.labels if subset is None else pool.labels[subset],
            X_test=test.X,
            y_test=test.labels,
            n_classes=n_classes,
            n_rounds=config.rounds,
            initial_budget=config.initial_budget,
            per_round=config.per_round,
            head_params=config.head_params,
        ):
            rows.append(row)
            bar.update(1)
            bar.set_postfix(acc=f"{row.test_accuracy:.3f}")
        append_results(csv_path, rows)
    bar.close()
    results = read_results(csv_path)
    wanted = {str(p) for p in pairs}
    results = [r for r in results if r.strategy in wanted and r.seed in config.seeds]
    table = summarise(results, n_classes)
    pool_kind = "balanced pool" if config.imbalance is None else f"long-tailed pool, imbalance {config.imbalance:g}"
    plot_results(results, config.output / "accuracy.png", title=f"{config.pool.name}: {pool_kind}")
    print(format_table(table))
    print(f"results: {csv_path}  plot: {config.output / 'accuracy.png'}")
    return table


if __name__ == "__main__":
    try:
        cfg = parse_config()
    except ValueError as e:
        print(f"jobs/simulate.py: {e}", file=sys.stderr)
        sys.exit(2)
    main(cfg)

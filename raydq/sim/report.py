"""Simulation results: the resumable CSV, the summary table and the accuracy-vs-labels plot."""

from __future__ import annotations

import csv
import fcntl
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import astuple, fields
from pathlib import Path

import numpy as np

from raydq.sim.loop import RoundResult

COLUMNS = [f.name for f in fields(RoundResult)]


def read_results(path: str | Path) -> list[RoundResult]:
    """Rows of a results CSV (empty when the file does not exist yet)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise ValueError(f"{path}: expected columns {COLUMNS}, found {reader.fieldnames}")
        return [
            RoundResult(
                r["strategy"],
                int(r["seed"]),
                int(r["round"]),
                int(r["labeled"]),
                float(r["test_accuracy"]),
                float(r["query_seconds"]),
            )
            for r in reader
        ]


def completed_runs(results: Iterable[RoundResult], n_rounds: int) -> set[tuple[str, int]]:
    """(strategy, seed) pairs that have every round 0..n_rounds: these are skipped on resume."""
    rounds: dict[tuple[str, int], set[int]] = defaultdict(set)
    for r in results:
        rounds[(r.strategy, r.seed)].add(r.round)
    return {key for key, seen in rounds.items() if seen >= set(range(n_rounds + 1))}


def append_results(path: str | Path, rows: list[RoundResult]) -> None:
    """Append one finished run (all its rounds at once, under an exclusive lock, flushed to disk), writing the header
    to a new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # several simulate.py processes may share one CSV
        new = f.tell() == 0 and path.stat().st_size == 0
        w = csv.writer(f)
        if new:
            w.writerow(COLUMNS)
        for row in rows:
            values = list(astuple(row))
            values[4] = f"{row.test_accuracy:.6f}"
            values[5] = f"{row.query_seconds:.4f}"
            w.writerow(values)
        f.flush()
        os.fsync(f.fileno())


def summarise(results: Iterable[RoundResult]) -> list[dict]:
    """Per strategy: seeds, mean ± std over seeds of round 0, round 1, the last round, and of the mean over rounds,
    plus mean query seconds; sorted best mean first."""
    by: dict[str, dict[int, dict[int, RoundResult]]] = defaultdict(lambda: defaultdict(dict))
    for r in results:
        by[r.strategy][r.seed][r.round] = r
    table = []
    for strategy, seeds in by.items():
        last = max(max(rs) for rs in seeds.values())
        full = {s: rs for s, rs in seeds.items() if set(rs) >= set(range(last + 1))}
        if not full:
            continue
        acc = np.array([[full[s][i].test_accuracy for i in range(last + 1)] for s in sorted(full)])
        secs = np.array([[full[s][i].query_seconds for i in range(1, last + 1)] for s in sorted(full)])
        table.append(
            {
                "strategy": strategy,
                "seeds": len(full),
                "round0": acc[:, 0].mean(),
                "round1": acc[:, 1].mean() if last >= 1 else float("nan"),
                "last": acc[:, -1].mean(),
                "last_round": last,
                "mean": acc.mean(axis=1).mean(),
                "mean_std": acc.mean(axis=1).std(),
                "query_s": secs.mean() if secs.size else float("nan"),
            }
        )
    return sorted(table, key=lambda row: -row["mean"])


def format_table(table: list[dict]) -> str:
    """A Markdown table like ../shared/BENCHMARKS.md's."""
    if not table:
        return "(no complete runs)"
    last = table[0]["last_round"]
    lines = [
        f"| strategy (start → queries) | seeds | round 0 | round 1 | round {last} | mean over rounds | query s/round |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in table:
        lines.append(
            f"| {t['strategy']} | {t['seeds']} | {t['round0']:.3f} | {t['round1']:.3f} | {t['last']:.3f} "
            f"| {t['mean']:.3f} ± {t['mean_std']:.3f} | {t['query_s']:.3f} |"
        )
    return "\n".join(lines)


def plot_results(results: Iterable[RoundResult], path: str | Path, *, title: str = "") -> Path:
    """Test accuracy against number of labels, mean ± std over seeds as a band, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by: dict[str, dict[int, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by[r.strategy][r.round].append((r.labeled, r.test_accuracy))
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    colors = plt.get_cmap("tab20").colors  # more strategies than the default cycle's ten colours
    for n, strategy in enumerate(sorted(by)):
        rounds = sorted(by[strategy])
        x = np.array([np.mean([v[0] for v in by[strategy][i]]) for i in rounds])
        acc = [np.array([v[1] for v in by[strategy][i]]) for i in rounds]
        mean = np.array([a.mean() for a in acc])
        std = np.array([a.std() for a in acc])
        style = "-" if strategy.endswith("dropquery") else ("--" if n % 2 else "-.")
        (line,) = ax.plot(
            x,
            mean,
            label=strategy,
            linewidth=2.2 if "dropquery" in strategy else 1.4,
            color=colors[(2 * n) % 20 + (n // 10) % 2],
            linestyle=style,
        )
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("labeled examples")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "active learning: test accuracy vs labels (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

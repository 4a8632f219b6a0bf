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
            raise ValueError(
                f"{path}: expected columns {COLUMNS}, found {reader.fieldnames} (a file from an older simulate.py "
                "lacks the balanced-accuracy columns: write to a new --output)"
            )
        return [
            RoundResult(
                r["strategy"],
                int(r["seed"]),
                int(r["round"]),
                int(r["labeled"]),
                float(r["test_accuracy"]),
                float(r["query_seconds"]),
                float(r["balanced_accuracy"]),
                float(r["macro_f1"]),
                int(r["classes_labeled"]),
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
            values[6] = f"{row.balanced_accuracy:.6f}"
            values[7] = f"{row.macro_f1:.6f}"
            w.writerow(values)
        f.flush()
        os.fsync(f.fileno())


def first_round_all_found(rounds: dict[int, RoundResult], n_classes: int) -> float:
    """The first round whose labels hold every one of ``n_classes`` classes; inf when none does."""
    found = [i for i, r in sorted(rounds.items()) if r.classes_labeled >= n_classes]
    return float(found[0]) if found else float("inf")


def summarise(results: Iterable[RoundResult], n_classes: int | None = None) -> list[dict]:
    """Per strategy: seeds, mean ± std over seeds of round 0, round 1, the last round, and of the mean over rounds
    of accuracy (with balanced accuracy and macro-F1 beside it); the mean over seeds of the first round with every
    class labeled (``n_classes`` classes; default the most any run found; a seed that never got there counts as the
    round after the last) and how many seeds never got there; plus mean query seconds. Sorted best mean balanced
    accuracy first."""
    results = list(results)
    if n_classes is None:
        n_classes = max((r.classes_labeled for r in results), default=0)
    by: dict[str, dict[int, dict[int, RoundResult]]] = defaultdict(lambda: defaultdict(dict))
    for r in results:
        by[r.strategy][r.seed][r.round] = r
    table = []
    for strategy, seeds in by.items():
        last = max(max(rs) for rs in seeds.values())
        full = {s: rs for s, rs in seeds.items() if set(rs) >= set(range(last + 1))}
        if not full:
            continue
        runs = [full[s] for s in sorted(full)]

        def per_round(field: str, runs=runs, last=last) -> np.ndarray:
            return np.array([[getattr(rs[i], field) for i in range(last + 1)] for rs in runs])

        acc, bal, f1 = per_round("test_accuracy"), per_round("balanced_accuracy"), per_round("macro_f1")
        secs = np.array([[rs[i].query_seconds for i in range(1, last + 1)] for rs in runs])
        found = np.array([first_round_all_found(rs, n_classes) for rs in runs])
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
                "balanced": bal.mean(axis=1).mean(),
                "balanced_std": bal.mean(axis=1).std(),
                "macro_f1": f1.mean(axis=1).mean(),
                "all_found": np.minimum(found, last + 1).mean(),  # a seed that never got there counts as last + 1
                "never_found": int((~np.isfinite(found)).sum()),
                "query_s": secs.mean() if secs.size else float("nan"),
            }
        )
    return sorted(table, key=lambda row: -row["balanced"])


def _found_cell(row: dict) -> str:
    if row["never_found"] == row["seeds"]:
        return "never"
    if row["never_found"]:  # those seeds count as one round past the last: the mean is a lower bound
        return f"≥ {row['all_found']:.1f} ({row['never_found']} never)"
    return f"{row['all_found']:.1f}"


def format_table(table: list[dict]) -> str:
    """A Markdown table like ../shared/BENCHMARKS.md's, with the imbalance columns beside it. Accuracy columns are
    plain test accuracy; "every class by round" is the mean over seeds of the first round whose labels cover every
    class (a lower bound, marked ≥, when some seeds never got there)."""
    if not table:
        return "(no complete runs)"
    last = table[0]["last_round"]
    lines = [
        f"| strategy (start → queries) | seeds | round 0 | round 1 | round {last} | mean accuracy "
        "| mean balanced accuracy | mean macro-F1 | every class by round | query s/round |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in table:
        lines.append(
            f"| {t['strategy']} | {t['seeds']} | {t['round0']:.3f} | {t['round1']:.3f} | {t['last']:.3f} "
            f"| {t['mean']:.3f} ± {t['mean_std']:.3f} | **{t['balanced']:.3f}** ± {t['balanced_std']:.3f} "
            f"| {t['macro_f1']:.3f} | {_found_cell(t)} | {t['query_s']:.3f} |"
        )
    return "\n".join(lines)


_PANELS = (
    ("test_accuracy", "test accuracy"),
    ("balanced_accuracy", "balanced accuracy (test)"),
    ("macro_f1", "macro-F1 (test)"),
    ("classes_labeled", "classes with at least one label"),
)


def plot_results(results: Iterable[RoundResult], path: str | Path, *, title: str = "") -> Path:
    """Accuracy, balanced accuracy, macro-F1 and classes labeled against number of labels: mean ± std over seeds as
    a band, one line per strategy, one panel per measure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by: dict[str, dict[int, list[RoundResult]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by[r.strategy][r.round].append(r)
    fig, axes = plt.subplots(2, 2, figsize=(14, 10), dpi=110)
    colors = plt.get_cmap("tab20").colors  # more strategies than the default cycle's ten colours
    for ax, (field, label) in zip(axes.ravel(), _PANELS, strict=True):
        for n, strategy in enumerate(sorted(by)):
            rounds = sorted(by[strategy])
            x = np.array([np.mean([v.labeled for v in by[strategy][i]]) for i in rounds])
            vals = [np.array([getattr(v, field) for v in by[strategy][i]], dtype=float) for i in rounds]
            mean = np.array([v.mean() for v in vals])
            std = np.array([v.std() for v in vals])
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
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title or "active learning against labels (mean ± std over seeds)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

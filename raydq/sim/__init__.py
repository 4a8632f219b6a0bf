"""The simulation loop (an oracle answers from known labels), its results CSV, summary table and plot."""

from raydq.sim.loop import RoundResult, StrategyPair, run_one
from raydq.sim.report import (
    append_results,
    completed_runs,
    format_table,
    plot_results,
    read_results,
    summarise,
)

__all__ = [
    "RoundResult",
    "StrategyPair",
    "append_results",
    "completed_runs",
    "format_table",
    "plot_results",
    "read_results",
    "run_one",
    "summarise",
]

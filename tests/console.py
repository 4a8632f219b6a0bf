"""Lines in a job's console output that a user would take for a failure: Ray warnings, error-level lines of Ray's
C++ core, tracebacks."""

from __future__ import annotations

import re

ALARMING = re.compile(r"\bWARNING\b|\bERROR\b|Traceback|\] E |\bE \d{4}|core_worker|Error:")


def alarming_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if ALARMING.search(line)]

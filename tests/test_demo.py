"""The main job a new user runs first (``make demo``, here with a small pool): it embeds, serves, labels over HTTP
and prints its own lines, with no Ray warning, error line or traceback a user would take for a failure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.console import alarming_lines

REPO = Path(__file__).parents[1]
pytestmark = pytest.mark.slow


def test_demo_prints_only_its_own_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RAYDQ_"))}
    proc = subprocess.run(
        [sys.executable, "jobs/demo.py", "--pool-size", "300", "--test-size", "100", "--rounds", "2",
         "--workdir", str(tmp_path)],
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "[round 0] strategy=centroid" in output and "[round 1] strategy=dropquery" in output, output[-3000:]
    assert re.search(r"\[done\] 2 rounds, 20 labels", output), output[-3000:]
    noise = alarming_lines(output)
    assert not noise, "\n".join(noise[:20])

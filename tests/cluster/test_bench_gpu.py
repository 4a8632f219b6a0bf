"""bench/gpu.py on a machine without a GPU: it parses its arguments, says why it skips, and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GPU_BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GPU_BENCH), *args], capture_output=True, text=True, timeout=300)


def test_without_a_gpu_it_says_why_and_exits_0():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: bench/gpu.py would run for real")
    for args in (["--dry-run"], ["--only", "kmeans"]):
        proc = _run(*args)
        assert proc.returncode == 0, proc.stderr
        assert "skipped, no CUDA device visible" in proc.stdout and "nothing measured" in proc.stdout


def test_bad_arguments_are_refused_before_any_work():
    proc = _run("--rows", "0", "--dry-run")
    assert proc.returncode == 2 and "--rows" in proc.stderr
    proc = _run("--only", "everything")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr

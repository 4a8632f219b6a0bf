"""The embed job as a process, killed halfway and resumed. (``ray job submit -- python jobs/embed.py`` to a separate
head runs in tests/test_readme.py, as the README shows it.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from raydq.embed import EmbedConfig, run_embed
from raydq.pool.store import load_pool, read_manifest
from tests.console import alarming_lines
from tests.embed.images import encode, rgb, write_folder

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _config(source, output, **kw) -> EmbedConfig:
    return EmbedConfig(source=str(source), output=str(output), batch_size=4, progress=False, **kw)


def test_killed_run_resumes_without_duplicates(ray_cluster, tmp_path):
    files = {f"img{n:02d}.png": encode(rgb(100 + n, (24, 24)), "PNG") for n in range(60)}
    good = write_folder(tmp_path / "imgs", files)
    out = tmp_path / "store"
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "jobs/embed.py", "--source", str(tmp_path / "imgs"), "--output", str(out),
           "--rows-per-shard", "1", "--batch-size", "1", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while len(list(out.glob("part-*.parquet"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # a crash: no cleanup, no final manifest
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    written = len(list(out.glob("part-*.parquet")))
    assert proc.returncode == -signal.SIGKILL and 3 <= written < len(good), "the run was not interrupted halfway"
    (out / ".part-crashed-00000.parquet.tmp").write_bytes(b"PAR1 half a shard")  # a write cut off mid-file

    summary = run_embed(_config(tmp_path / "imgs", out))
    assert summary.skipped >= 3 and summary.images == len(good) - summary.skipped
    pool = load_pool(out)
    assert sorted(pool.ids) == sorted(str(p) for p in good)  # exactly one row per image
    assert not list(out.glob(".*.tmp")) and read_manifest(out).num_rows == len(good)


def test_local_run_prints_no_ray_error_lines(tmp_path, ray_cluster):
    """Without RAY_ADDRESS the job starts a Ray of its own, also while another Ray runs on the machine and is named
    in Ray's address file, as ``ray start`` leaves it (here the session's Ray: plain ``ray.init()`` joins it, and
    with two running warns that it picked one); Ray's core must not print an error-looking line (it logs one for
    every Ray Data actor pool, ray-project/ray#53727) that a user would take for a failure."""
    import ray

    write_folder(tmp_path / "imgs", {f"img{n}.png": encode(rgb(n, (16, 16)), "PNG") for n in range(6)})
    ray_tmp = Path(tempfile.mkdtemp(prefix="rq", dir="/tmp"))  # short: Ray's socket paths live under it
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text(ray.get_runtime_context().gcs_address)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RAYDQ_"))}
    try:
        proc = subprocess.run(
            [sys.executable, "jobs/embed.py", "--source", str(tmp_path / "imgs"), "--output", str(tmp_path / "store"),
             "--batch-size", "2", "--actors", "1", "--no-progress"],
            cwd=REPO, env={**env, "PYTHONPATH": str(REPO), "RAY_TMPDIR": str(ray_tmp)}, capture_output=True,
            text=True, timeout=600,
        )  # fmt: skip
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert read_manifest(tmp_path / "store").num_rows == 6, output[-3000:]
    noise = alarming_lines(output)
    assert not noise, "\n".join(noise[:20])
    assert "Started a local Ray instance" in output and "Connecting to existing Ray cluster" not in output, output

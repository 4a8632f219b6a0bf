"""The embed job as a process: killed halfway and resumed, and submitted with ``ray job submit`` to a separate
head started by the test (own ports, own temp dir, stopped by process group)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from raydq.embed import EmbedConfig, run_embed
from raydq.pool.store import load_pool, read_manifest
from tests.embed.images import encode, good_images, rgb, write_folder
from tests.netns import pids_naming

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _config(source, output, **kw) -> EmbedConfig:
    return EmbedConfig(source=str(source), output=str(output), batch_size=4, progress=False, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def _wait_for_dashboard(url: str, head: subprocess.Popen, timeout: float = 180) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no Ray dashboard at {url} after {timeout} s")


def _stop_head(head: subprocess.Popen, temp_dir: str) -> None:
    """Stop only this head: its process group (``ray start --block`` and what it spawned), then any process still
    naming this head's private temp dir. Never ``ray stop``: it stops every Ray on the machine."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=wait)
            break
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)  # children may outlive the leader
    for pid in pids_naming(temp_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_ray_job_submit_on_a_separate_head(tmp_path):
    """``ray job submit -- python jobs/embed.py`` against a head started here (own ports, own temp dir)."""
    write_folder(tmp_path / "imgs", dict(list(good_images().items())[:3]))
    out = tmp_path / "store"
    temp_dir = tempfile.mkdtemp(prefix="rdq-", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    ports = {name: _free_port() for name in ("port", "dashboard-port", "ray-client-server-port",
                                             "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                             "metrics-export-port", "runtime-env-agent-port")}  # fmt: skip
    ray = str(Path(venv_bin) / "ray")
    start = [ray, "start", "--head", "--block", "--num-cpus=2", "--node-ip-address=127.0.0.1",
             "--dashboard-host=127.0.0.1", "--include-dashboard=true", f"--temp-dir={temp_dir}",
             "--disable-usage-stats", *(f"--{k}={v}" for k, v in ports.items())]  # fmt: skip
    log = open(tmp_path / "head.log", "wb")  # noqa: SIM115 - closed below
    head = subprocess.Popen(start, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        address = f"http://127.0.0.1:{ports['dashboard-port']}"
        _wait_for_dashboard(address, head)
        submit = [ray, "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
                  "python", "jobs/embed.py", "--source", str(tmp_path / "imgs"), "--output", str(out),
                  "--no-progress"]  # fmt: skip
        done = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "raydq embed: 3 images" in done.stdout
    finally:
        _stop_head(head, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
    pool = load_pool(out)
    assert len(pool) == 3 and read_manifest(out).num_rows == 3

"""Commands that bind the README's fixed ports (8000, Ray's 6379 and 8265), run the way a user runs them but in a
private network namespace and with a private ``RAY_TMPDIR``: they collide with nothing on this machine, and every
process they leave behind is found (by process group, and by the private temp dir in its command line) and stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pids_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def own_network_shell(script: Path, *, cwd: Path, log: Path, home: Path) -> Iterator[subprocess.Popen]:
    """``bash script`` in a new network namespace (loopback up) and session; everything it started is stopped when
    the block ends. The environment is a fresh shell's: no virtualenv, no PYTHONPATH, no Ray or raydq settings but
    token auth off for the local Ray it may start."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("unshare and ip (util-linux, iproute2) give the README's fixed ports a network of their own")
    ray_tmp = tempfile.mkdtemp(prefix="rdq-", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RAYDQ_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", HOME=str(home))
    with open(log, "wb") as out:
        shell = subprocess.Popen(
            ["unshare", "--net", "bash", "-c", f"ip link set lo up && exec bash {script}"],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            yield shell
        finally:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(shell.pid, sig)
            for pid in _pids_naming(ray_tmp):  # Ray processes that left the group
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                shell.wait(timeout=30)
            shutil.rmtree(ray_tmp, ignore_errors=True)


def in_namespace_of(shell: subprocess.Popen) -> list[str]:
    """The prefix that runs a command in ``shell``'s network namespace (to reach its 127.0.0.1)."""
    return ["nsenter", f"--net=/proc/{shell.pid}/ns/net"]

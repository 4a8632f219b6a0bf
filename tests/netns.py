"""Commands run exactly as a user types them, but in private network and process namespaces: the README's fixed ports
(8000, Ray's 6379 and 8265) collide with nothing on this machine, ``ray stop`` sees (and stops) only the Ray these
commands started, and when the namespace's first process ends the kernel ends everything left in it."""

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


def pids_naming(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (read from /proc: psutil is not a dependency)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def own_network_shell(script: Path, *, cwd: Path, log: Path, home: Path) -> Iterator[subprocess.Popen]:
    """``bash script`` in new network (loopback up), process and mount namespaces; everything it started is stopped
    when the block ends. The environment is a fresh shell's: no virtualenv, no PYTHONPATH, no Ray or raydq settings
    but token auth off for the local Ray it may start, and a private ``RAY_TMPDIR``."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("unshare and ip (util-linux, iproute2) give these commands namespaces of their own")
    ray_tmp = tempfile.mkdtemp(prefix="rdq-", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RAYDQ_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", HOME=str(home))
    with open(log, "wb") as out:
        shell = subprocess.Popen(
            ["unshare", "--net", "--pid", "--fork", "--mount-proc", "bash", "-c",
             f"ip link set lo up && exec bash {script}"],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            yield shell
        finally:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(shell.pid, sig)
            for pid in pids_naming(ray_tmp):  # Ray processes that left the group
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                shell.wait(timeout=30)
            shutil.rmtree(ray_tmp, ignore_errors=True)


def in_namespace_of(shell: subprocess.Popen) -> list[str]:
    """The prefix that runs a command in ``shell``'s network namespace (to reach its 127.0.0.1)."""
    return ["nsenter", f"--net=/proc/{shell.pid}/ns/net"]

"""The README's "Label with Label Studio" commands, run as written in a fresh shell (only the ports, the pool, the
home folder and the connector's state file are swapped for the test's own): Label Studio, raydq and the connector
start, tasks appear, an annotation made in Label Studio becomes a raydq label, and nothing tried to reach the
network. When README.md has the section, its bash block is what runs, so the README cannot drift from commands that
work."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import httpx
import pytest
import yaml

from tests.integrations.label_studio_server import LS_VENV, label_studio_binary
from tests.integrations.services import REPO, free_port, write_fmnist_store

pytestmark = pytest.mark.slow
HEADING = "Label with Label Studio"
# The text given to the README (section "Label with Label Studio"), used until README.md has it.
COMMANDS = """\
bash scripts/setup_label_studio.sh     # once: Label Studio 1.23.2 in .venv-ls (make setup runs it too)
# Label Studio offline (no version check, analytics or error reports), webhooks to this machine allowed, and a
# stable SECRET_KEY (its API tokens are signed with it: a new key at each start would void them)
export SECRET_KEY=change-me-to-a-long-random-string LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false \\
  SENTRY_DSN= FRONTEND_SENTRY_DSN= SSRF_PROTECTION_ENABLED=false
.venv-ls/bin/label-studio start --no-browser --internal-host 127.0.0.1 --port 8080 \\
  --username admin@example.com --password change-me --enable-legacy-api-token \\
  --user-token 0123456789abcdef0123456789abcdef01234567 &
# raydq, here in one process without Ray (serve run serve_configs/local.yaml works the same)
RAYDQ_API_TOKEN=raydq-secret-token .venv/bin/python -m raydq.serve.local --config serve_configs/local.yaml --port 8000 &
# the connector: fills the project "raydq" with the items raydq selects, sends annotations back as labels
RAYDQ_LS_LABEL_STUDIO_URL=http://127.0.0.1:8080 RAYDQ_LS_LABEL_STUDIO_TOKEN=0123456789abcdef0123456789abcdef01234567 \\
RAYDQ_LS_RAYDQ_URL=http://127.0.0.1:8000 RAYDQ_LS_RAYDQ_TOKEN=raydq-secret-token \\
RAYDQ_LS_LISTEN_PORT=8090 RAYDQ_LS_PUBLIC_URL=http://127.0.0.1:8090 RAYDQ_LS_WEBHOOK_SECRET=change-me-to-a-secret \\
  .venv/bin/python jobs/label_studio.py
"""
LS_TOKEN = "0123456789abcdef0123456789abcdef01234567"


def readme_commands() -> str:
    """The bash block of README.md's section when it exists, else COMMANDS."""
    readme = (REPO / "README.md").read_text()
    m = re.search(rf"^#+ {re.escape(HEADING)}\s*$(.*?)^```bash\n(.*?)^```", readme, re.M | re.S)
    return m.group(2) if m else COMMANDS


def test_readme_commands_label_through_label_studio(tmp_path):
    label_studio_binary()  # skips (fails under CI) when scripts/setup_label_studio.sh has not run
    store, truth = write_fmnist_store(tmp_path / "store", n=120)
    config = yaml.safe_load((REPO / "serve_configs" / "local.yaml").read_text())
    config["applications"][0]["args"].update(embeddings=str(store), database_url=f"sqlite:///{tmp_path / 'labels.db'}",
                                             retrain_delay_s=0.2)  # fmt: skip
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(config))
    ports = {"8080": free_port(), "8000": free_port(), "8090": free_port()}
    script = readme_commands().replace("serve_configs/local.yaml", str(tmp_path / "local.yaml"))
    for old, new in ports.items():
        script = re.sub(rf"(?<=[:= ]){old}\b", str(new), script)
    # A fresh home: Label Studio's data folder lands in it (seeded with the migrated empty database that
    # scripts/setup_label_studio.sh leaves, instead of minutes of first-start migrations).
    data = tmp_path / "home" / ".local" / "share" / "label-studio"
    data.mkdir(parents=True)
    shutil.copyfile(LS_VENV / "empty-db" / "label_studio.sqlite3", data / "label_studio.sqlite3")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAYDQ_", "PYTHONPATH", "VIRTUAL_ENV"))}
    # ... and the connector's state file, which by default lands in the checkout's data/.
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO), RAYDQ_LS_STATE_PATH=str(tmp_path / "sync.db"))
    (tmp_path / "commands.sh").write_text("set -e\n" + script)
    log = open(tmp_path / "commands.log", "wb")  # noqa: SIM115 (closed below, after the process group ends)
    shell = subprocess.Popen(["bash", str(tmp_path / "commands.sh")], cwd=REPO, env=env, stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    ls = f"http://127.0.0.1:{ports['8080']}"
    headers = {"Authorization": f"Token {LS_TOKEN}"}
    try:
        def tasks():
            assert shell.poll() is None, f"the commands exited early; see {tmp_path / 'commands.log'}"
            try:
                projects = httpx.get(f"{ls}/api/projects/", headers=headers, timeout=10).json()["results"]
                project = next(p["id"] for p in projects if p["title"] == "raydq")
                r = httpx.get(f"{ls}/api/tasks/", params={"project": project, "fields": "all"}, headers=headers,
                              timeout=30)  # fmt: skip
                return r.json()["tasks"]
            except (httpx.HTTPError, StopIteration, KeyError, ValueError):
                return []

        first = _wait(tasks, timeout=300, what="tasks in Label Studio")[0]
        label = truth[first["data"]["raydq_id"]]
        choice = {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}
        r = httpx.post(f"{ls}/api/tasks/{first['id']}/annotations/", json={"result": [choice]}, headers=headers,
                       timeout=60)  # fmt: skip
        r.raise_for_status()

        def labeled():
            r = httpx.get(f"http://127.0.0.1:{ports['8000']}/status", timeout=10,
                          headers={"Authorization": "Bearer raydq-secret-token"})  # fmt: skip
            return r.json()["labeled"] == 1

        _wait(labeled, timeout=120, what="the annotation as a raydq label")
        output = (tmp_path / "commands.log").read_text(errors="replace")
        assert "sentry.io" not in output and "NameResolutionError" not in output  # nothing tried to phone home
    finally:
        _end_group(shell)
        log.close()


def _end_group(shell: subprocess.Popen) -> None:
    """End the process group this test started (the shell and the three services it put in the background)."""
    for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(shell.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(shell.pid, 0)  # anyone left in the group?
            except ProcessLookupError:
                break
            time.sleep(0.5)
    if shell.poll() is None:
        shell.wait(timeout=30)


def _wait(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1.0)
    raise TimeoutError(f"timed out waiting for {what}")

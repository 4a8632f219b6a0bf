"""A first run that just works, and one that cannot start says why in one line: no embedding store yet, or a label
store whose schema is older than the code (the service refuses it until ``python -m raydq.admin db upgrade``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.labels.legacy_schema import build_legacy_database
from tests.netns import in_namespace_of, own_network_shell
from tests.serve.helpers import wait_for, write_store

REPO = Path(__file__).parents[2]


def _serve_local(args: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "raydq.serve.local", "--args", json.dumps(args), "--port", "0"],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_a_missing_embedding_store_is_one_line_naming_the_command(tmp_path):
    args = {"embeddings": str(tmp_path / "nowhere"), "database_url": "sqlite:///l.db"}
    line = _one_line(_serve_local(args, tmp_path))
    assert "no embedding store at" in line and "python jobs/embed.py" in line


def test_a_label_store_with_an_older_schema_is_refused_naming_the_upgrade(tmp_path):
    store = write_store(tmp_path / "store")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    build_legacy_database(url, n_labels=3)
    line = _one_line(_serve_local({"embeddings": str(store), "database_url": url}, tmp_path))
    assert "python -m raydq.admin db upgrade" in line
    upgrade = subprocess.run([sys.executable, "-m", "raydq.admin", "db", "upgrade", "--url", url], cwd=tmp_path,
                             env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stderr
    from raydq.labels import LabelStore

    labels = LabelStore(url)  # the upgraded store opens and keeps its labels
    assert labels.count_labels() == 3
    labels.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_serve_run_before_anything_was_embedded_says_what_to_run_then_serves(tmp_path):
    """``serve run serve_configs/local.yaml`` before the embed job: one line saying what to run (no replicas
    restarted over and over), 503s naming it; once the store appears the same service serves it."""
    config = yaml.safe_load((REPO / "serve_configs" / "local.yaml").read_text())
    assert config["applications"][0]["args"]["embeddings"] == "data/embeddings/fashion-mnist-train"  # make demo's
    serve = Path(sys.executable).parent / "serve"
    script = tmp_path / "run.sh"
    script.write_text(f"{serve} run {REPO / 'serve_configs' / 'local.yaml'}\n")
    log = tmp_path / "serve.log"
    with own_network_shell(script, cwd=tmp_path, log=log, home=tmp_path) as shell:
        def readyz() -> tuple[int, str]:
            out = subprocess.run([*in_namespace_of(shell), "curl", "-s", "-w", "\n%{http_code}",
                                  "localhost:8000/readyz"], capture_output=True, text=True, timeout=30)  # fmt: skip
            body, _, code = out.stdout.rpartition("\n")
            return int(code or 0), body

        waiting = wait_for(lambda: (r := readyz())[0] == 503 and r, timeout=240, what="the service answering")
        assert "python jobs/embed.py" in waiting[1], waiting
        write_store(tmp_path / "data" / "embeddings" / "fashion-mnist-train")
        wait_for(lambda: readyz()[0] == 200, timeout=240, what="the service to serve the new store")
    output = log.read_text(errors="replace")
    assert output.count("no embedding store at") == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]

"""Every command the README shows works, as written, in a fresh shell after the two set-up commands.

The README's bash blocks after the set-up block run in order, unchanged, as one script, in a copy of this checkout
(the copy's ``data/`` starts with the embedding store ``make demo`` leaves behind, when there is one, so the commands
act on it without touching this checkout's data). The script runs in private network and process namespaces
(``tests/netns.py``): the fixed ports the README uses collide with nothing on the machine, and ``ray stop`` stops only
the Ray the script started. The "Label with Label Studio" block runs in its own test
(tests/integrations/test_readme_label_studio.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.netns import own_network_shell

REPO = Path(__file__).parents[1]
STORE = Path("data/embeddings/fashion-mnist-train")
SKIPPED_SECTION = "Label with Label Studio"
pytestmark = pytest.mark.slow

def readme_blocks() -> list[tuple[str, str]]:
    """``(section heading, bash block)`` for every bash block of README.md, in order."""
    text = (REPO / "README.md").read_text()
    blocks, heading = [], ""
    for m in re.finditer(r"^(#+ [^\n]*)$|^```bash\n(.*?)^```", text, re.M | re.S):
        if m.group(1):
            heading = m.group(1).lstrip("#").strip()
        else:
            blocks.append((heading, m.group(2)))
    return blocks


def usage_script() -> str:
    blocks = readme_blocks()
    setup, rest = blocks[0], blocks[1:]
    assert "make demo" in setup[1] and "make test" in setup[1], "the README must open with the two set-up commands"
    assert rest[0][1].strip().startswith(". .venv/bin/activate"), "usage must start by activating the virtualenv"
    return "set -euo pipefail\n" + "\n".join(block for heading, block in rest if heading != SKIPPED_SECTION)


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / name.decode()
        if source.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name.decode())
    for venv in (".venv", ".venv-ls"):
        if (REPO / venv).exists():
            (dest / venv).symlink_to(REPO / venv)
    if (REPO / STORE / "manifest.json").is_file():  # what `make demo` left behind
        shutil.copytree(REPO / STORE, dest / STORE)


@pytest.mark.timeout(2400)
def test_readme_usage_commands_run_as_written(tmp_path):
    checkout = tmp_path / "checkout"
    _copy_checkout(checkout)
    (checkout / "data").mkdir(exist_ok=True)
    script = checkout / ".readme-commands.sh"
    script.write_text(usage_script())
    log = tmp_path / "commands.log"
    with own_network_shell(script, cwd=checkout, log=log, home=tmp_path) as shell:
        code = shell.wait(timeout=1500)
    output = log.read_text(errors="replace")
    assert code == 0, output[-4000:]

    data = checkout / "data"
    exported = [json.loads(line) for line in (data / "labels.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in exported} == {"label", "skip"} and len(exported) >= 2, exported
    assert (data / "labels-backup.db").stat().st_size > 0
    assert (data / "item.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"loc":' not in output, output[-4000:]  # no curl printed a refusal

"""Rewrite the copies embedded in k8s/rayservice.yaml and k8s/rayjob-embed.yaml from their sources.

KubeRay has no reference from a RayService or RayJob to a shared spec, and YAML anchors do not cross files, so the
manifests embed copies: the `spec:` body of k8s/raycluster.yaml (after the `rayClusterConfig:`/`rayClusterSpec:` key
that ends each embedding file) and the Serve config serve_configs/cluster.yaml (as the RayService's serveConfigV2
block, comment lines dropped). tests/test_k8s.py compares the parsed copies, so a hand edit that drifts fails.

    python -m tests.k8s.sync_cluster_spec          # rewrite
    python -m tests.k8s.sync_cluster_spec --check  # exit 1 if a file would change
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
SOURCE = "raycluster.yaml"
EMBEDDINGS = {"rayservice.yaml": "  rayClusterConfig:", "rayjob-embed.yaml": "  rayClusterSpec:"}
SERVE_SOURCE = ROOT / "serve_configs" / "cluster.yaml"
SERVE_KEY = "  serveConfigV2: |"


def spec_body(source_text: str) -> list[str]:
    """The lines under the top-level `spec:` key of the source manifest (comments included)."""
    lines = source_text.splitlines()
    try:
        start = lines.index("spec:") + 1
    except ValueError:
        raise ValueError(f"{SOURCE}: no top-level 'spec:' line") from None
    end = next((i for i in range(start, len(lines)) if lines[i] and not lines[i].startswith((" ", "#"))), len(lines))
    return lines[start:end]


def render(embedding_text: str, key_line: str, body: list[str]) -> str:
    """The embedding file with everything after `key_line` replaced by `body` indented two more spaces."""
    lines = embedding_text.splitlines()
    if key_line not in lines:
        raise ValueError(f"no line {key_line.strip()!r} to embed the cluster spec under")
    head = lines[: lines.index(key_line) + 1]
    return "\n".join(head + [("  " + line) if line else line for line in body]) + "\n"


def render_serve_config(embedding_text: str, serve_text: str) -> str:
    """The RayService file with its serveConfigV2 block (up to the next two-space key) replaced by `serve_text`."""
    lines = embedding_text.splitlines()
    if SERVE_KEY not in lines:
        raise ValueError(f"no line {SERVE_KEY.strip()!r} to embed the Serve config under")
    start = lines.index(SERVE_KEY) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("  ") and not lines[i].startswith("   "))
    block = ["    " + line for line in serve_text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return "\n".join(lines[:start] + block + lines[end:]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    body = spec_body((K8S / SOURCE).read_text())
    stale = []
    for name, key_line in EMBEDDINGS.items():
        path = K8S / name
        new = render(path.read_text(), key_line, body)
        if name == "rayservice.yaml" and SERVE_SOURCE.exists():
            new = render_serve_config(new, SERVE_SOURCE.read_text())
        if new != path.read_text():
            stale.append(name)
            if not args.check:
                path.write_text(new)
    for name in stale:
        print(f"{'out of date' if args.check else 'rewrote'}: k8s/{name}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())

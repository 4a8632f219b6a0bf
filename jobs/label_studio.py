"""Label with Label Studio: keep a Label Studio project filled with the items raydq selects, and send its
annotations back to raydq as labels (a long-running sync job; see raydq.integrations.label_studio).

    python jobs/label_studio.py --config label-studio.yaml          # settings from a YAML file
    RAYDQ_LS_LABEL_STUDIO_URL=http://localhost:8080 RAYDQ_LS_LABEL_STUDIO_TOKEN=... \\
        RAYDQ_LS_RAYDQ_URL=http://localhost:8000 python jobs/label_studio.py --image-urls raydq ...

Every setting is a YAML key, an environment variable RAYDQ_LS_<KEY> (which wins over the file) and, for the most
used ones, a flag (which wins over both). On a Ray cluster: ``ray job submit --working-dir . -- python
jobs/label_studio.py`` with the same variables, or k8s/label-studio-sync.yaml.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from raydq.integrations.label_studio import SyncSettings, run_connector

FLAGS = ["label_studio_url", "project_id", "project_title", "raydq_url", "queue_size", "batch_size", "strategy",
         "poll_interval_s", "state_path", "listen_host", "listen_port", "public_url", "image_urls",
         "raydq_public_url"]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file of settings")
    p.add_argument("--once", action="store_true", help="one sync pass, then exit")
    p.add_argument("--log-level", default="INFO")
    for name in FLAGS:
        field = SyncSettings.model_fields[name]
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=field.description)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    logging.basicConfig(level=ns.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {name: getattr(ns, name) for name in FLAGS if getattr(ns, name) is not None}
    try:
        settings = SyncSettings.load(ns.config, **overrides)
    except (ValidationError, ValueError) as e:
        print(f"label_studio: invalid settings: {e}", file=sys.stderr)
        return 2
    run_connector(settings, once=ns.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the labeling service in one process with uvicorn, without Ray (a laptop without Serve, and the crash tests).

    python -m raydq.serve.local --config serve_configs/local.yaml --port 8000
    python -m raydq.serve.local --args '{"embeddings": "...", "database_url": "sqlite:///labels.db"}' --port 0

``--port 0`` picks a free port; the bound port is printed as ``listening on http://HOST:PORT``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

from raydq.serve.config import ServeArgs


def load_args(*, config: str | None, args_json: str | None) -> ServeArgs:
    data: dict = {}
    if config:
        import yaml

        doc = yaml.safe_load(Path(config).read_text())
        apps = doc.get("applications") or []
        if not apps:
            raise ValueError(f"{config}: no applications")
        data.update(apps[0].get("args") or {})
    if args_json:
        data.update(json.loads(args_json))
    return ServeArgs.model_validate(data).absolutized()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a serve_configs/*.yaml; its first application's args are used")
    parser.add_argument("--args", dest="args_json", help="ServeArgs as JSON (overrides --config)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    ns = parser.parse_args(argv)
    if not ns.config and not ns.args_json:
        parser.error("give --config or --args")

    import uvicorn

    from raydq.serve.builder import startup_problem
    from raydq.serve.inprocess import create_inprocess_app

    args = load_args(config=ns.config, args_json=ns.args_json)
    if message := startup_problem(args):
        print(message, file=sys.stderr)
        raise SystemExit(2)
    app = create_inprocess_app(args, host=ns.host)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ns.host, ns.port))
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    print(f"listening on http://{host}:{port}", flush=True, file=sys.stdout)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()

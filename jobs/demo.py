"""The main job on the embedded default: embed Fashion-MNIST, serve it, and play the annotator over HTTP.

1. Ray Data embeds a pool (train split) and a held-out set (test split) with EfficientNet-Lite0.
2. Ray Serve starts the labeling service on that pool (fresh SQLite label store) on 127.0.0.1.
3. A simulated annotator asks ``/select_batch`` for a batch, answers from Fashion-MNIST's true labels with
   ``/update_labels``, waits for the head-retraining actor, fetches the served head from ``/model`` and prints its
   accuracy on the held-out images. Round 0 is the cold start (k-means centroids); later rounds run DropQuery.

Run from the repository root: ``python jobs/demo.py`` (``make demo`` installs everything first).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import time
from pathlib import Path

import numpy as np

from raydq.client import RaydqClient
from raydq.local_ray import quiet_local_ray

DEFAULT_POOL_SIZE = 5000  # what `python jobs/embed.py` embeds by default, into the same folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE, help="Fashion-MNIST train images in the pool")
    p.add_argument("--test-size", type=int, default=2000, help="held-out test images for the accuracy")
    p.add_argument("--rounds", type=int, default=6, help="labeling rounds (round 0 is the cold start)")
    p.add_argument("--batch-size", type=int, default=10, help="labels per round (the paper: 1 x classes)")
    p.add_argument("--strategy", default="dropquery", help="query strategy after the cold start")
    p.add_argument("--workdir", default="data", help="where embeddings and the demo's label store go")
    p.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (0: a free one)")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embed(split: str, limit: int, output: Path) -> None:
    from raydq.embed import EmbedConfig, run_embed

    run_embed(EmbedConfig(source="fashion-mnist", split=split, limit=limit, output=str(output)))  # prints a summary


def wait_for_head(client: RaydqClient, revision: int, timeout: float = 300.0) -> dict:
    """Poll /status until the head-retraining actor has trained on ``revision`` (or reports a failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        training = client.status()["training"]
        if training["trained_revision"] >= revision and training["state"] == "idle":
            return training
        if training.get("last_error") and training["state"] == "idle":
            raise RuntimeError(f"head training failed: {training['last_error']}")
        time.sleep(0.2)
    raise TimeoutError(f"no head trained on label revision {revision} within {timeout:.0f}s")


def accuracy(model: dict, X: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the served head (logits = X @ W + b, the folded eval-mode head) on held-out embeddings."""
    W, b = np.asarray(model["W"], dtype=np.float32), np.asarray(model["b"], dtype=np.float32)
    return float(((X @ W + b).argmax(axis=1) == y).mean())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_local_ray()
    import ray
    from ray import serve

    from raydq.pool import load_pool
    from raydq.serve.app import build_app
    from raydq.serve.config import ServeArgs

    started = time.perf_counter()
    workdir = Path(args.workdir).resolve()
    # The default pool is the embed job's default output, so `serve run serve_configs/local.yaml` serves it afterwards.
    default_pool = args.pool_size == DEFAULT_POOL_SIZE
    pool_name = "fashion-mnist-train" if default_pool else f"fashion-mnist-train-{args.pool_size}"
    pool_dir = workdir / "embeddings" / pool_name
    test_dir = workdir / "embeddings" / f"fashion-mnist-test-{args.test_size}"
    db_dir = workdir / "demo"
    shutil.rmtree(db_dir, ignore_errors=True)  # each demo starts with no labels
    db_dir.mkdir(parents=True)

    # its own Ray (never a cluster left running here), with Ray's own INFO chatter and worker logs kept out of the
    # demo's lines
    ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    for name in ("ray.data", "ray.serve"):
        logging.getLogger(name).setLevel(logging.WARNING)
    embed("train", args.pool_size, pool_dir)
    embed("test", args.test_size, test_dir)
    embedded = time.perf_counter()

    pool, test = load_pool(pool_dir), load_pool(test_dir)
    classes = list(pool.manifest.class_names)
    truth = dict(zip(pool.ids, pool.labels, strict=True))  # the simulated annotator's knowledge, never the service's

    port = args.port or free_port()
    quiet = {"enable_access_log": False, "log_level": "WARNING"}  # the demo prints its own lines
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config=quiet)
    serve.run(
        build_app(ServeArgs(embeddings=str(pool_dir), database_url=f"sqlite:///{db_dir / 'labels.db'}",
                            default_strategy=args.strategy, cold_start="centroid", classes=classes)),
        name="raydq", route_prefix="/", logging_config=quiet,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    print(f"[serve] labeling service at {url} (OpenAPI docs at {url}/docs)")

    rows = []
    with RaydqClient(url) as client:
        client.wait_until_ready()
        for round_ in range(args.rounds):
            t0 = time.perf_counter()
            batch = client.select_batch(args.batch_size)
            query_s = time.perf_counter() - t0
            answers = [{"id": item["id"], "label": classes[truth[item["id"]]]} for item in batch["items"]]
            ack = client.update_labels(answers, batch_id=batch["batch_id"])
            training = wait_for_head(client, ack["revision"])
            acc = accuracy(client.model(), test.X, test.labels)
            rows.append((round_, ack["labeled"], acc))
            print(
                f"[round {round_}] strategy={batch['strategy']:<9} labeled={ack['labeled']:>4} "
                f"test_accuracy={acc:.3f} model_version={training['model_version']} query_s={query_s:.2f}"
            )
        status = client.status()

    ray.shutdown()  # takes Serve down with it (serve.shutdown() first makes Ray log its controller's forced exit)
    total = time.perf_counter() - started
    print(
        f"[done] {len(rows)} rounds, {status['labeled']} labels, accuracy {rows[0][2]:.3f} -> {rows[-1][2]:.3f}; "
        f"k-means backend {status['kmeans_backend']}; embedding {embedded - started:.0f}s, total {total:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Real processes for the labeling-tool tests: a small Fashion-MNIST pool served by ``python -m raydq.serve.local``
(uvicorn, no Ray) on 127.0.0.1 and a free port, restartable on the same port and label store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from raydq.data.fashion_mnist import CLASS_NAMES, fashion_mnist_id, fashion_mnist_root, load_fashion_mnist

REPO = Path(__file__).parents[2]


def write_fmnist_store(directory: Path, *, n: int = 300, seed: int = 0) -> tuple[Path, dict[str, str]]:
    """An embedding store of ``n`` Fashion-MNIST test images written as the embed job writes one (Parquet +
    manifest), with the uri locators the embed job records; the embedding is the image's pixels scaled to [0, 1]
    (no encoder: these tests exercise labeling, not embedding). Returns the store and each id's true class."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raydq.pool.store import Manifest, write_manifest

    images, labels = load_fashion_mnist("test")
    index = np.sort(np.random.default_rng(seed).choice(len(images), size=n, replace=False))
    ids = [fashion_mnist_id("test", int(i)) for i in index]
    X = (images[index].reshape(n, -1) / 255.0).astype(np.float32)
    uris = [f"{fashion_mnist_root()}/t10k-images-idx3-ubyte.gz#{int(i)}" for i in index]
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "id": ids, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1]),
        "uri": uris, "label": labels[index],
    })  # fmt: skip
    pq.write_table(table, directory / "part-0.parquet")
    write_manifest(directory, Manifest(model="pixels", weights="none", dim=X.shape[1], num_rows=n,
                                       class_names=list(CLASS_NAMES)))  # fmt: skip
    return directory, {i: CLASS_NAMES[int(y)] for i, y in zip(ids, labels[index], strict=True)}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RaydqServer:
    """``python -m raydq.serve.local`` as a child process; ``restart`` keeps the port and the label store."""

    def __init__(self, store: Path, database: Path, *, token: str | None, log: Path, port: int | None = None) -> None:
        self.args = {
            "embeddings": str(store), "database_url": f"sqlite:///{database}", "retrain_delay_s": 0.2,
            "head_params": {"max_epochs": 80}, "api_token_env": "RAYDQ_TEST_TOKEN",
        }  # fmt: skip
        self.token, self.log, self.port = token, log, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> RaydqServer:
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAYDQ_TEST_TOKEN": self.token or ""}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "raydq.serve.local", "--args", json.dumps(self.args), "--port", str(self.port)],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"raydq exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.3)
        raise TimeoutError(f"raydq did not answer within {timeout} s; see {self.log}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None

    def restart(self, sig: int = signal.SIGKILL) -> None:
        self.stop(sig)
        self.start()

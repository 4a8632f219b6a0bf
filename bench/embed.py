"""Embed-job throughput against the compute floor: a bare forward loop of the same model, same input size.

Prints images/s of ``run_embed`` on Fashion-MNIST (end to end: planning, actor start-up, decode, forward, Parquet
writes) and of a single-process loop calling the model on ready-made input tensors, measured in this run (the bare
loop before and after the job, averaged), and their ratio. Target on a 2-core CPU machine with the default model:
ratio >= 0.8.

    python bench/embed.py [--images 2000] [--model efficientnet_lite0] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def make_inputs(encoder, images: int, batch_size: int, seed: int = 0):
    """Ready-made model inputs from real Fashion-MNIST images (the preprocessing is not part of the floor)."""
    import numpy as np

    from raydq.data.fashion_mnist import load_fashion_mnist

    raw, _ = load_fashion_mnist("train")
    idx = np.random.default_rng(seed).choice(len(raw), size=batch_size, replace=False)
    x = encoder.preprocess(raw[idx])
    return x, -(-images // batch_size)


def bare_loop(encoder, x, batches: int) -> float:
    """Images/s of ``batches`` forward passes on one ready-made batch (after one warm-up pass)."""
    encoder.forward(x)
    start = time.perf_counter()
    for _ in range(batches):
        encoder.forward(x)
    return batches * x.shape[0] / (time.perf_counter() - start)


def preprocess_loop(encoder, raw, batches: int) -> float:
    """Images/s of the actor's preprocessing alone (28x28 uint8 -> normalised 224x224), for the time budget."""
    encoder.preprocess(raw)
    start = time.perf_counter()
    for _ in range(batches):
        encoder.preprocess(raw)
    return batches * len(raw) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    args = parser.parse_args()

    import ray
    import torch

    from raydq.embed import EmbedConfig, run_embed
    from raydq.models import create_encoder

    config = EmbedConfig(source="fashion-mnist", split="train", limit=args.images, model=args.model, progress=False)
    if args.batch_size:
        config = config.model_copy(update={"batch_size": args.batch_size})
    encoder = create_encoder(args.model)
    x, batches = make_inputs(encoder, args.images, config.batch_size)
    print(f"model {args.model} on {encoder.device}, input {tuple(x.shape[1:])}, batch {config.batch_size}, "
          f"{batches * config.batch_size} images, torch threads {torch.get_num_threads()}", flush=True)  # fmt: skip
    from raydq.data.fashion_mnist import load_fashion_mnist

    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes on the machine skew both numbers)")
    prep = preprocess_loop(encoder, load_fashion_mnist("test")[0][: config.batch_size], max(1, batches // 4))
    print(f"preprocess only (resize 28->224 + normalise): {prep:.1f} images/s", flush=True)
    bare_before = bare_loop(encoder, x, batches)
    print(f"bare forward loop (before): {bare_before:.1f} images/s", flush=True)

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="raydq-bench-embed-") as tmp:
        summary = run_embed(config.model_copy(update={"output": tmp}))
    ray.shutdown()

    bare_after = bare_loop(encoder, x, batches)
    print(f"bare forward loop (after): {bare_after:.1f} images/s", flush=True)
    bare = (bare_before + bare_after) / 2
    job = summary.images_per_second
    steady = (summary.images - config.batch_size) / max(summary.seconds - summary.startup_seconds, 1e-9)
    print(f"embed job: {job:.1f} images/s ({summary.images} images in {summary.seconds:.1f} s, "
          f"{summary.failures} failures; {summary.startup_seconds:.1f} s to the first batch, "
          f"{steady:.1f} images/s after it)")  # fmt: skip
    print(f"bare forward loop: {bare:.1f} images/s (mean of before/after)")
    print(f"ratio job/bare: {job / bare:.2f} (target >= 0.8); load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

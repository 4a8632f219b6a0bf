"""Embed-job throughput against the compute floor: a bare forward loop of the same model, same input size.

Prints images/s of ``run_embed`` on Fashion-MNIST (end to end: planning, actor start-up, preprocessing, forward,
Parquet writes) and of a single-process loop calling the same model, with the job's precision, on ready-made input
tensors at its best thread count (the bare loop runs before and after the job; the two are averaged), and their
ratio. Target on a 2-core CPU machine with the default model: ratio >= 0.8. Also prints the preprocessing rate and
the job's fixed cost (a one-batch run) against its marginal rate, to show where the time goes.

    python bench/embed.py [--images 2000] [--model efficientnet_lite0] [--batch-size 32] [--actors N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def make_inputs(encoder, batch_size: int, seed: int = 0):
    """Ready-made model inputs from real Fashion-MNIST images (the preprocessing is not part of the floor)."""
    import numpy as np

    from raydq.data.fashion_mnist import load_fashion_mnist

    raw, _ = load_fashion_mnist("train")
    idx = np.random.default_rng(seed).choice(len(raw), size=batch_size, replace=False)
    x = encoder.preprocess(raw[idx])
    return x


def bare_loop(encoder, x, seconds: float) -> float:
    """Images/s of forward passes on one ready-made batch for about ``seconds`` (after one warm-up pass)."""
    encoder.forward(x)
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        encoder.forward(x)
        done += x.shape[0]
    return done / (time.perf_counter() - start)


def best_bare_loop(encoder, x, seconds: float) -> tuple[float, dict[int, float]]:
    """The floor is the best a single process does: torch's default thread count, and one thread (on a small or
    busy machine one thread can beat two, because the intra-op barriers of a small model cost more than they win).
    """
    import torch

    default = torch.get_num_threads()
    rates = {}
    for threads in sorted({default, 1}, reverse=True):
        torch.set_num_threads(threads)
        rates[threads] = bare_loop(encoder, x, seconds)
    torch.set_num_threads(default)
    return max(rates.values()), rates


def preprocess_loop(encoder, raw, batches: int) -> float:
    """Images/s of the actor's preprocessing alone (28x28 uint8 -> normalised 224x224), for the time budget."""
    encoder.preprocess(raw)
    start = time.perf_counter()
    for _ in range(batches):
        encoder.preprocess(raw)
    return batches * len(raw) / (time.perf_counter() - start)


def _rates(rates: dict[int, float]) -> str:
    return ", ".join(f"{r:.1f} images/s with {t} thread{'s' * (t > 1)}" for t, r in rates.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--bare-seconds", type=float, default=15.0, help="seconds per bare-loop measurement")
    parser.add_argument("--actors", type=int, default=None, help="embed actors (default: the job's default)")
    parser.add_argument("--torch-threads", type=int, default=None, help="threads per actor (default: the job's)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the local Ray instance this benchmark starts
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray
    import torch

    from raydq.embed import EmbedConfig, run_embed
    from raydq.models import create_encoder

    config = EmbedConfig(source="fashion-mnist", split="train", limit=args.images, model=args.model, progress=False)
    if args.batch_size:
        config = config.model_copy(update={"batch_size": args.batch_size})
    config = config.model_copy(
        update={"actors": args.actors, "torch_threads": args.torch_threads, "precision": args.precision}
    )
    encoder = create_encoder(args.model, precision=config.precision)  # the job's autocast, resolved the same way
    x = make_inputs(encoder, config.batch_size)
    print(f"model {args.model} on {encoder.device} ({encoder.precision}), input {tuple(x.shape[1:])}, "
          f"batch {config.batch_size}, "
          f"{args.images} images, torch threads {torch.get_num_threads()}", flush=True)  # fmt: skip
    from raydq.data.fashion_mnist import load_fashion_mnist

    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes on the machine skew both numbers)")
    prep = preprocess_loop(encoder, load_fashion_mnist("test")[0][: config.batch_size], 20)
    print(f"preprocess only (resize 28->224 + normalise): {prep:.1f} images/s", flush=True)
    bare_before, rates = best_bare_loop(encoder, x, args.bare_seconds)
    print(f"bare forward loop (before): {_rates(rates)}", flush=True)

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="raydq-bench-embed-") as tmp:
        # A one-batch run first: its wall time is the job's fixed cost (planning, actor start-up, model load).
        tiny = run_embed(config.model_copy(update={"output": f"{tmp}/tiny", "limit": config.batch_size}))
        summary = run_embed(config.model_copy(update={"output": f"{tmp}/full"}))
    ray.shutdown()

    bare_after, rates = best_bare_loop(encoder, x, args.bare_seconds)
    print(f"bare forward loop (after): {_rates(rates)}", flush=True)
    bare = (bare_before + bare_after) / 2
    job = summary.images_per_second
    steady = (summary.images - tiny.images) / max(summary.seconds - tiny.seconds, 1e-9)
    print(f"embed job: {job:.1f} images/s ({summary.images} images in {summary.seconds:.1f} s, "
          f"{summary.failures} failures)")  # fmt: skip
    print(f"  fixed cost (a {tiny.images}-image run): {tiny.seconds:.1f} s; marginal rate beyond it: "
          f"{steady:.1f} images/s")  # fmt: skip
    print(f"bare forward loop: {bare:.1f} images/s (best thread count, mean of before/after)")
    print(f"ratio job/bare: {job / bare:.2f} (target >= 0.8); load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

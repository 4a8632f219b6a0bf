"""Embed-job throughput against the compute floor: a bare forward loop of the same model, same input size.

Prints images/s of ``run_embed`` on Fashion-MNIST or ``--source`` (end to end: planning, actor start-up,
preprocessing, forward, Parquet writes) and of a single-process loop calling the same model, with the job's precision
and batch size, on ready-made input tensors (the bare loop runs before and after the job; the two are averaged), and
their ratio. Also prints the preprocessing rate and the job's fixed cost (a one-batch run) against its marginal rate,
to show where the time goes.

CPU (the default without a GPU): the bare loop runs at its best thread count; target on a 2-core machine with the
default model: ratio >= 0.8.

GPU (``--device cuda``): the job runs one actor per GPU with the GPU defaults (batch 256, autocast bf16 from compute
capability 8.0, else fp16) and the bare loop is the same fp16/bf16 forward on the same GPU, synchronised before each
clock read. An ``open_clip:<model>`` spec without a tag is randomly initialised, so nothing is downloaded:

    python bench/embed.py [--images 2000] [--model efficientnet_lite0] [--batch-size N] [--actors N]
    python bench/embed.py --model open_clip:ViT-B-32 --device cuda [--images 20000]

The last line is ``ratio job/bare: <float> ...`` (bench/gpu.py reads it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def sample_images(n: int, split: str = "train", seed: int = 0):
    """``n`` Fashion-MNIST images (28x28 uint8), or random pixels of that shape where the dataset is not installed:
    a forward pass costs the same whatever the pixels are."""
    import numpy as np

    from raydq.data.fashion_mnist import load_fashion_mnist

    rng = np.random.default_rng(seed)
    try:
        raw, _ = load_fashion_mnist(split)
    except FileNotFoundError:
        return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return raw[rng.choice(len(raw), size=n, replace=False)]


def synchronize(encoder) -> None:
    """Wait for the GPU's queued work, so that the clock measures it (a no-op on CPU)."""
    import torch

    if encoder.device.startswith("cuda"):
        torch.cuda.synchronize(encoder.device)


def bare_loop(encoder, x, seconds: float) -> float:
    """Images/s of forward passes on one ready-made batch for about ``seconds`` (after one warm-up pass)."""
    encoder.forward(x)
    synchronize(encoder)
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        encoder.forward(x)
        done += x.shape[0]
    synchronize(encoder)
    return done / (time.perf_counter() - start)


def best_bare_loop(encoder, x, seconds: float) -> tuple[float, dict[int, float]]:
    """The floor is the best a single process does. On CPU: torch's default thread count, and one thread (on a small
    or busy machine one thread can beat two, because the intra-op barriers of a small model cost more than they win).
    On a GPU the thread count does not matter: one measurement, keyed by the current count."""
    import torch

    default = torch.get_num_threads()
    if encoder.device.startswith("cuda"):
        return (rate := bare_loop(encoder, x, seconds)), {default: rate}
    rates = {}
    for threads in sorted({default, 1}, reverse=True):
        torch.set_num_threads(threads)
        rates[threads] = bare_loop(encoder, x, seconds)
    torch.set_num_threads(default)
    return max(rates.values()), rates


def preprocess_loop(encoder, raw, batches: int) -> float:
    """Images/s of the actor's preprocessing alone (28x28 uint8 -> normalised model input), for the time budget."""
    encoder.preprocess(raw)
    synchronize(encoder)
    start = time.perf_counter()
    for _ in range(batches):
        encoder.preprocess(raw)
    synchronize(encoder)
    return batches * len(raw) / (time.perf_counter() - start)


def _rates(rates: dict[int, float]) -> str:
    return ", ".join(f"{r:.1f} images/s with {t} thread{'s' * (t > 1)}" for t, r in rates.items())


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/embed.py: --device cuda, but torch sees no CUDA device")
    return device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=None, help="images to embed (default: 2000 CPU, 20000 GPU)")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument(
        "--source",
        default="fashion-mnist",
        help="what the job embeds: any source of jobs/embed.py "
        "(Fashion-MNIST needs the Debian package dataset-fashion-mnist or RAYDQ_FASHION_MNIST_DIR)",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda when visible")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the job's (256 on GPU, 32 on CPU)")
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
    from raydq.embed.pipeline import CPU_BATCH_SIZE, GPU_BATCH_SIZE
    from raydq.models import create_encoder

    device = resolve_device(args.device)
    gpu = device == "cuda"
    images = args.images or (20000 if gpu else 2000)
    # The bare loop and the job run the same model, precision and batch size: resolved here, passed to the job.
    encoder = create_encoder(args.model, device=device, precision=args.precision)
    batch_size = args.batch_size or (GPU_BATCH_SIZE if gpu else CPU_BATCH_SIZE)
    config = EmbedConfig(
        source=args.source, split="train", limit=images, model=args.model, progress=False, batch_size=batch_size,
        actors=args.actors, torch_threads=args.torch_threads, precision=encoder.precision,
        num_gpus_per_actor=1 if gpu else 0,
    )  # fmt: skip
    x = encoder.preprocess(sample_images(batch_size))
    where = f"{device} ({torch.cuda.get_device_name(device)})" if gpu else device
    print(f"model {args.model} on {where} ({encoder.precision}), input {tuple(x.shape[1:])}, batch {batch_size}, "
          f"{images} images, torch threads {torch.get_num_threads()}", flush=True)  # fmt: skip

    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes on the machine skew both numbers)")
    prep = preprocess_loop(encoder, sample_images(batch_size, "test"), 20)
    print(f"preprocess only (resize 28->{x.shape[-1]} + normalise): {prep:.1f} images/s", flush=True)
    bare_before, rates = best_bare_loop(encoder, x, args.bare_seconds)
    print(f"bare forward loop (before): {_rates(rates)}", flush=True)

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="raydq-bench-embed-") as tmp:
        # A one-batch run first: its wall time is the job's fixed cost (planning, actor start-up, model load).
        tiny = run_embed(config.model_copy(update={"output": f"{tmp}/tiny", "limit": batch_size}))
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
    floor = "same GPU" if gpu else "best thread count"
    print(f"bare forward loop: {bare:.1f} images/s ({floor}, mean of before/after)")
    target = "" if gpu else " (target >= 0.8)"
    print(f"ratio job/bare: {job / bare:.2f}{target}; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

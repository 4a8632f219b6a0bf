"""GPU benchmarks, each a ratio against a baseline measured in the same run: ``python bench/gpu.py``.

(a) k-means: cuML (seeding and assignment in cupy) against faiss on the CPU, on the same candidates and from the
    same k-means++ start, fixed work (``tol=0``, 25 iterations): 256,000 x 512 -> 1000 and 25,600 x 768 -> 100.
    Time, objective, and cuML's seeding, Lloyd and assignment timed apart.
(b) DropQuery on one GPU shard of 10,000,000 x 768 float16 rows: phase 1 (``mismatch_counts_torch``, M = 3) and
    phase 2 (threshold, candidates, their normalised embedding, cuML k-means into B = 100, nearest distinct rows)
    against M + 1 plain GEMMs ``X @ W`` on the same GPU, in float16 and in float32.
(c) the embed job with open_clip ViT-B-32 (random init) against a bare fp16 forward loop of the same model: runs
    ``bench/embed.py --device cuda`` and reads its last line.

One line per measurement, each with its ratio. Where no NVIDIA GPU is visible it prints why and exits 0;
``--dry-run`` does only that check (and parses the arguments).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# bench/ is on sys.path when this file runs as a script: the k-means bench's cases and data are reused.
from kmeans import Case, make_data

HERE = Path(__file__).resolve().parent
D, C, B, M = 768, 100, 100, 3


def gpu_missing_reason() -> str | None:
    """Why the GPU benchmarks cannot run here, or None when a CUDA device is usable by torch."""
    try:
        import torch
    except ImportError as e:
        return f"torch does not import ({e})"
    if not torch.cuda.is_available():
        return f"no CUDA device visible to torch {torch.__version__} (built for CUDA {torch.version.cuda})"
    return None


def cuml_missing_reason() -> str | None:
    import warnings

    from raydq.cluster.choose import cuml_usable

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuml_usable():
            return None
    return "; ".join(str(w.message) for w in caught) or "cupy/cuML not installed (pip install '.[gpu]')"


def synced(fn):
    """``fn()``'s result and wall time, with the device synchronised before and after."""
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0


# -- (a) ----------------------------------------------------------------------------------------------------------
def bench_kmeans(niter: int) -> None:
    from raydq.cluster import KmeansBase, make_kmeans
    from raydq.cluster.cuda import cupy_module
    from raydq.numerics.distances import nearest_centroid
    from raydq.numerics.seeding import kmeans_plusplus
    from raydq.numerics.threads import cpu_budget

    cp = cupy_module()
    for case in (Case("B=1000 candidates", 256_000, 512, 1000), Case("B=100 candidates", 25_600, 768, 100)):
        x = make_data(case)
        runs, centroids = {}, None
        for backend in ("cuml", "faiss"):
            km = make_kmeans(case.d, case.k, niter=niter, tol=0.0, seed=1234, backend=backend)
            _, seconds = synced(lambda km=km, x=x: km.train(x))
            runs[backend] = (seconds, float(km.assign(x)[0].sum(dtype=np.float64)))
            centroids = km.centroids if centroids is None else centroids
        xd = cp.asarray(x)
        n_seed = max(KmeansBase.SEED_ROWS_PER_CENTROID * case.k, int(KmeansBase.SEEDING_BUDGET / (case.k * case.d)))
        seed_rows = xd[:n_seed]  # what training seeds on
        _, seeding = synced(lambda r=seed_rows, k=case.k: kmeans_plusplus(r, k, np.random.default_rng(0), xp=cp))
        _, assign = synced(lambda xd=xd, c=centroids: nearest_centroid(xd, cp.asarray(c), xp=cp))
        (t_gpu, obj_gpu), (t_cpu, obj_cpu) = runs["cuml"], runs["faiss"]
        print(
            f"(a) k-means {case.n:,} x {case.d} -> {case.k}, {niter} iterations: cuML {t_gpu:.3f}s"
            f" (seeding {seeding:.3f}s, assignment {assign:.3f}s)  faiss {t_cpu:.3f}s on {cpu_budget()} CPUs"
            f"  ratio faiss/cuML {t_cpu / t_gpu:.1f}x  objective cuML/faiss {obj_gpu / obj_cpu:.4f}"
        )


# -- (b) ----------------------------------------------------------------------------------------------------------
def make_shard(n: int, seed: int = 0):
    """(X float16 on the GPU, W, b): rows of C overlapping classes (bench/query.py's recipe) and a nearest-class
    head, generated on the device chunk by chunk."""
    import torch

    gen = torch.Generator(device="cuda").manual_seed(seed)
    centers = torch.randn((C, D), generator=gen, device="cuda") * 0.22
    X = torch.empty((n, D), dtype=torch.float16, device="cuda")
    for s in range(0, n, 1 << 20):
        e = min(n, s + (1 << 20))
        labels = torch.randint(0, C, (e - s,), generator=gen, device="cuda")
        X[s:e] = (torch.randn((e - s, D), generator=gen, device="cuda") + centers[labels]).half()
    W = centers.T.contiguous()
    b = -0.5 * (centers * centers).sum(1)
    return X, W, b


def shard_query(X, W, b, *, seed: int = 0):
    """Phase 1 and phase 2 of a DropQuery on one GPU shard; returns (chosen rows, phase-1 seconds, k-means s)."""
    import torch

    from raydq.cluster import array_module, make_kmeans
    from raydq.numerics.device import mismatch_counts_torch
    from raydq.numerics.nearest import nearest_distinct_rows
    from raydq.strategies.dropquery import candidate_cap, choose_threshold

    t0 = time.perf_counter()
    _, counts = mismatch_counts_torch(X, W, b, n_passes=M, dropout=0.75, seed=seed, chunk_rows=1 << 16)
    hist = torch.bincount(counts.to(torch.int64), minlength=M + 1).cpu().numpy()
    t1 = time.perf_counter()
    t = choose_threshold(hist, batch_size=B)
    rows = torch.nonzero(counts > t).squeeze(1)
    cap = candidate_cap(B, None)
    if len(rows) > cap:
        gen = torch.Generator(device="cuda").manual_seed(seed)
        rows = rows[torch.randperm(len(rows), generator=gen, device="cuda")[:cap]].sort().values
    Z = X[rows].float()
    Z = (Z - Z.mean(0)) / Z.std(0).clamp_min(1e-6)  # standardised, as the head's BatchNorm output
    Z = torch.nn.functional.normalize(Z, dim=1).cpu().numpy()
    t2 = time.perf_counter()
    km = make_kmeans(D, B, niter=25, seed=seed, max_points_per_centroid=None, backend="cuml")
    km.train(Z)
    chosen = rows.cpu().numpy()[nearest_distinct_rows(Z, km.centroids, xp=array_module())]
    return chosen, t1 - t0, time.perf_counter() - t2


def gemm_floor(X, W) -> float:
    """Seconds of M + 1 plain products ``X @ W`` (what y* and M dropout passes cannot undercut)."""

    def products() -> None:
        for _ in range(M + 1):
            X @ W

    return synced(products)[1]


def bench_shard(n: int) -> None:
    import torch

    X, W, b = make_shard(n)
    shard_query(X[: 1 << 20], W, b)  # warm-up: kernels, cuBLAS handles, cuML
    (chosen, phase1, kmeans_s), total = synced(lambda: shard_query(X, W, b))
    assert len(np.unique(chosen)) == B
    floors = {"fp16": gemm_floor(X, W.half()), "fp32": gemm_floor(X.float(), W)}  # the float32 copy is dropped
    torch.cuda.empty_cache()
    print(
        f"(b) DropQuery phase 1+2 on one GPU shard, {n:,} x {D} float16, B={B} M={M}: {total:.3f}s"
        f" (phase 1 {phase1:.3f}s, k-means {kmeans_s:.3f}s)  floor {M + 1} fp16 GEMMs {floors['fp16']:.3f}s"
        f" ratio {total / floors['fp16']:.2f}  floor {M + 1} fp32 GEMMs {floors['fp32']:.3f}s"
        f" ratio {total / floors['fp32']:.2f}"
    )


# -- (c) ----------------------------------------------------------------------------------------------------------
def bench_embed(images: int) -> None:
    cmd = [sys.executable, str(HERE / "embed.py"), "--model", "open_clip:ViT-B-32", "--device", "cuda"]
    cmd += ["--images", str(images)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ratio job/bare:")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"(c) embed job, open_clip ViT-B-32 on cuda: bench/embed.py failed (rc {proc.returncode}): {tail}")
        if "unrecognized arguments: --device" in proc.stderr:
            print("    bench/embed.py has no --device flag yet: it comes with the GPU embed work")
        return
    print(f"(c) embed job, open_clip ViT-B-32 (random init) on cuda, {images} images: {lines[-1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="only check for a GPU and say what would run")
    parser.add_argument("--only", choices=["kmeans", "shard", "embed"], help="run one benchmark")
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the GPU shard in (b)")
    parser.add_argument("--niter", type=int, default=25, help="k-means iterations in (a)")
    parser.add_argument("--images", type=int, default=20_000, help="images for the embed job in (c)")
    args = parser.parse_args()
    if args.rows < 1 or args.niter < 1 or args.images < 1:
        parser.error("--rows, --niter and --images must be positive")
    reason = gpu_missing_reason()
    if reason is not None:
        print(f"bench/gpu.py: skipped, {reason}; nothing measured")
        return
    if args.dry_run:
        print(f"bench/gpu.py: a CUDA device is visible; would run {args.only or 'kmeans, shard, embed'}")
        return
    print(f"bench/gpu.py: load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    no_cuml = cuml_missing_reason() if args.only in (None, "kmeans", "shard") else None
    for name, label, run in (
        ("kmeans", "(a)", lambda: bench_kmeans(args.niter)),
        ("shard", "(b)", lambda: bench_shard(args.rows)),
        ("embed", "(c)", lambda: bench_embed(args.images)),
    ):
        if args.only not in (None, name):
            continue
        if no_cuml and name != "embed":
            print(f"{label} skipped: {no_cuml}")
            continue
        run()


if __name__ == "__main__":
    main()

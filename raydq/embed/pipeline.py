"""``run_embed(config)``: read -> decode+resize (CPU tasks) -> embed (actor pool) -> atomic Parquet shards.

Where the time goes on a small CPU machine: the forward pass dominates, so the pool runs one actor per node by
default and lets it use the node's cores for torch's intra-op threads (``torch_threads``), while the light read and
decode tasks time-share the remaining logical CPU. The actor never reserves every logical CPU (Ray #44687: a pool
as large as the CPU count starves the read tasks and deadlocks). Shards are written by the driver, which also keeps
the failure report, the progress bar and the summary in one place.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from raydq.data.sources import DecodeSpec, plan_source
from raydq.embed.actor import EmbedActor
from raydq.embed.config import EmbedConfig
from raydq.embed.writer import FailureReport, ShardWriter, count_rows, prepare_output, resolve_output
from raydq.models.base import resolve_precision
from raydq.pool.store import Manifest, write_manifest

log = logging.getLogger(__name__)


class EmbedSummary(BaseModel):
    """What one run did. ``images`` counts rows embedded by this run; ``skipped`` those already in the store."""

    images: int
    images_per_second: float
    seconds: float
    failures: int
    skipped: int
    total_rows: int
    output: str
    failures_path: str
    model: str
    dim: int

    def line(self) -> str:
        return (
            f"raydq embed: {self.images} images in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s), "
            f"{self.failures} failures, {self.skipped} already embedded; {self.total_rows} rows in {self.output}"
        )


def raydq_version() -> str:
    """The installed distribution's version (``raydq.__version__`` may be unreachable under an editable install)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("raydq")
    except PackageNotFoundError:
        return "unknown"


MAX_DEFAULT_CPU_ACTORS = 4  # each holds a model copy: bounded so a big CPU node does not load dozens
# Images per forward pass: 32 keeps a CPU's working set small, but leaves a large GPU idle between small kernels,
# so GPUs get 256 (not yet measured on a GPU: compare with `bench/embed.py --device cuda --batch-size N`).
GPU_BATCH_SIZE = 256
CPU_BATCH_SIZE = 32


class ActorLayout(BaseModel):
    """The embed stage's actor pool: it starts with ``actors``, and a GPU pool scales between ``min_actors`` and
    ``max_actors`` as the autoscaler adds or removes GPU nodes (a fixed pool has all three equal)."""

    actors: int
    min_actors: int
    max_actors: int
    num_gpus: float
    num_cpus: float
    torch_threads: int | None
    device: str
    precision: str = "fp32"
    batch_size: int = CPU_BATCH_SIZE
    decode_cpus: float = 1.0  # per read/decode task: the configured value, less where no node has that much free


def gpus_per_actor(config: EmbedConfig, cluster: dict[str, float]) -> float:
    """GPUs each embedding actor reserves: the configured value, else 1 when the cluster has a GPU, else 0 (CPU)."""
    if config.num_gpus_per_actor is not None:
        return config.num_gpus_per_actor
    return 1.0 if float(cluster.get("GPU", 0.0)) >= 1 else 0.0


def plan_actors(
    config: EmbedConfig,
    cluster: dict[str, float],
    single_node: bool,
    cuda_capability: tuple[int, int] | None = None,
    free_node_cpus: Sequence[float] | None = None,
) -> ActorLayout:
    """Size the actor pool from the cluster's resources (pure: tested without Ray).

    ``free_node_cpus`` are the CPUs free on each node now (default: the cluster's CPUs on one node). A running
    service holds some of them, so a CPU pool sized from the totals may not fit beside it and a decode task; the
    per-actor CPU reservation shrinks until the pool and one decode task fit (``cpus_per_fit``), and a decode task
    asks for no more than the freest node has.

    ``cuda_capability`` is the compute capability of the GPUs the actors will use (the driver probes one, since it
    may run on a CPU-only head); it decides ``precision='auto'`` (bf16 from 8.0, else fp16; unknown: fp16).
    """
    gpus, cpus = float(cluster.get("GPU", 0.0)), float(cluster.get("CPU", 0.0))
    num_gpus = gpus_per_actor(config, cluster)
    if num_gpus > 0:
        present = int(gpus // num_gpus)
        if present < 1 and config.max_actors is None:
            raise ValueError(
                f"num_gpus_per_actor={num_gpus} but the cluster has {gpus:g} GPUs; on an autoscaling cluster set "
                "max_actors to let the pool wait for GPU nodes"
            )
        if config.actors:
            lo = hi = start = config.actors
        else:
            lo, hi = 1, config.max_actors or present
            start = max(1, min(present, hi))
        return ActorLayout(
            actors=start, min_actors=lo, max_actors=hi, num_gpus=num_gpus, num_cpus=config.cpus_per_actor,
            torch_threads=config.torch_threads, device="cuda",
            precision=resolve_precision(config.precision, "cuda", cuda_capability),
            batch_size=config.batch_size or GPU_BATCH_SIZE, decode_cpus=config.decode_cpus,
        )  # fmt: skip
    if config.max_actors is not None:
        raise ValueError(
            "max_actors sizes an autoscaling GPU pool; CPU pools are fixed (a pool as large as the CPU count can "
            "deadlock, Ray #44687): set actors instead"
        )
    # CPU: a few single-model actors, data-parallel. Measured on 2 cores (bench/embed.py): two 1-thread actors
    # beat one 2-thread actor, since the intra-op barriers of a small CNN cost more than they win.
    actors = config.actors or max(1, min(int(cpus), MAX_DEFAULT_CPU_ACTORS))
    num_cpus, decode_cpus = config.cpus_per_actor, config.decode_cpus
    if cpus:
        free = list(free_node_cpus) if free_node_cpus is not None else [cpus]
        decode_cpus = max(0.01, min(config.decode_cpus, max(free, default=0.0)))  # a task that cannot fit hangs
        num_cpus = cpus_per_fit(free, actors, config.cpus_per_actor, decode_cpus)
        if num_cpus < config.cpus_per_actor:
            log.info("%d CPU actors x %g CPUs would not fit beside a decode task in the free CPUs %s (Ray #44687); "
                     "using %.2f CPUs per actor", actors, config.cpus_per_actor, free, num_cpus)  # fmt: skip
    threads = config.torch_threads
    if threads is None:
        threads = max(1, int(cpus // actors)) if single_node and cpus else max(1, math.ceil(num_cpus))
    return ActorLayout(
        actors=actors, min_actors=actors, max_actors=actors, num_gpus=0.0, num_cpus=num_cpus, torch_threads=threads,
        device="cpu", precision=resolve_precision(config.precision, "cpu"),
        batch_size=config.batch_size or CPU_BATCH_SIZE, decode_cpus=decode_cpus,
    )  # fmt: skip


def free_cpus_per_node() -> list[float] | None:
    """CPUs free now on each live node (a running service holds some); None where Ray does not say."""
    try:
        from ray._private.state import available_resources_per_node  # no public per-node view in Ray 2.60
    except ImportError:
        return None
    free = [float(r.get("CPU", 0.0)) for r in available_resources_per_node().values()]
    return free or None


def cpus_per_fit(free: Sequence[float], actors: int, wanted: float, decode: float) -> float:
    """The largest CPU reservation per actor, at most ``wanted``, with which ``actors`` actors fit in the nodes'
    ``free`` CPUs while one decode task (``decode`` CPUs) keeps a place on the freest node: a pool that takes every
    free CPU starves its own read tasks (Ray #44687). 0.01 when nothing fits (the actors then share what is free).

    >>> cpus_per_fit([2.0], 2, 1.0, 1.0), cpus_per_fit([2.0, 2.0, 2.0], 4, 1.0, 1.0)
    (0.5, 1.0)
    """
    room = [max(0.0, float(f)) for f in free]
    if not room or actors < 1:
        return wanted
    top = max(range(len(room)), key=room.__getitem__)
    room[top] -= min(decode, room[top])

    def fits(c: float) -> bool:
        return sum(math.floor(r / c + 1e-9) for r in room) >= actors

    candidates = [wanted] + [r / k for r in room for k in range(1, actors + 1) if 0.01 <= r / k < wanted]
    return max((c for c in candidates if fits(c)), default=0.01)


def actor_pool(layout: ActorLayout):
    """Ray Data's compute strategy for the layout: fixed, or autoscaling from ``actors`` within [min, max]."""
    import ray

    if layout.min_actors == layout.max_actors:
        return ray.data.ActorPoolStrategy(size=layout.actors)
    return ray.data.ActorPoolStrategy(
        min_size=layout.min_actors, max_size=layout.max_actors, initial_size=layout.actors
    )


def cuda_capability(num_gpus: float) -> tuple[int, int]:
    """Compute capability of a GPU the actors will run on, from a one-off task on a GPU worker (the driver may run
    on a CPU-only head, as in k8s/). On an autoscaling cluster it waits for a GPU node, as the actors would."""
    import ray

    return tuple(ray.get(ray.remote(num_gpus=num_gpus, num_cpus=0)(_device_capability).remote()))


def _device_capability() -> tuple[int, int]:
    import torch

    return tuple(torch.cuda.get_device_capability())


def _embed_stage(ds, config: EmbedConfig, layout: ActorLayout):
    """The actor-pool stage. The explicit scheduling strategy keeps Ray Data from fusing the decode tasks into the
    actor (fusion needs identical remote args), so decoding stays on CPU tasks, pipelined with the forward passes."""
    with warnings.catch_warnings():  # scheduling_strategy as a plain remote arg is deprecated after the pinned 2.60
        warnings.simplefilter("ignore", DeprecationWarning)
        return ds.map_batches(
            EmbedActor,
            fn_constructor_kwargs={
                "spec": config.model,
                "device": layout.device,
                "torch_threads": layout.torch_threads,
                "precision": layout.precision,
            },
            batch_size=layout.batch_size,
            batch_format="numpy",
            compute=actor_pool(layout),
            num_gpus=layout.num_gpus or None,
            num_cpus=layout.num_cpus,
            scheduling_strategy="DEFAULT",
        )


class _DropProgressNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Progress bars disabled" not in record.getMessage()


def _quiet_progress_notice() -> None:
    """Ray Data warns that its progress bars are off; they are off because the job shows its own bar."""
    progress = logging.getLogger("ray.data._internal.progress")
    if not any(isinstance(f, _DropProgressNotice) for f in progress.filters):
        progress.addFilter(_DropProgressNotice())


def _first_sightings(ids: np.ndarray, ok: np.ndarray, seen: set[str]):
    """True for each id not seen before (in the store or earlier in this run); good ids are marked as seen."""
    for item_id, good in zip(ids, ok, strict=True):
        if item_id in seen:
            yield False
        else:
            if good:
                seen.add(item_id)
            yield True


def _progress(total: int | None, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, unit="img", desc="embed", disable=not enabled, file=sys.stderr, dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 10.0,
    )  # fmt: skip


def run_embed(config: EmbedConfig) -> EmbedSummary:
    """Embed ``config.source`` into ``config.output``; joins the running Ray cluster (or starts a local one)."""
    import ray

    from raydq.models.factory import describe_encoder

    if not ray.is_initialized():
        ray.init()
    started = time.perf_counter()
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.print_on_execution_start
    ctx.enable_progress_bars = False  # our own bar counts written rows; Ray's would interleave with it
    ctx.print_on_execution_start = False
    _quiet_progress_notice()

    spec, dim, pcfg = describe_encoder(config.model)  # the driver records the model; the actors run it
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    resources = ray.cluster_resources()
    num_gpus = gpus_per_actor(config, resources)
    capability = cuda_capability(num_gpus) if num_gpus > 0 and config.precision == "auto" else None
    layout = plan_actors(config, resources, single_node=len(nodes) <= 1, cuda_capability=capability,
                         free_node_cpus=free_cpus_per_node())  # fmt: skip
    preprocessing = {**spec["preprocessing"], "precision": layout.precision}
    output = resolve_output(config.resolved_output())  # a local folder, or an s3:// / gs:// URI as given
    done = prepare_output(
        output, spec=spec, preprocessing=preprocessing, dtype=config.dtype, overwrite=config.overwrite
    )
    decode = DecodeSpec(
        size=pcfg.size, resize_mode=pcfg.resize_mode, interpolation=pcfg.interpolation, max_pixels=config.max_pixels
    )
    plan = plan_source(
        config.source, split=config.split, limit=config.resolved_limit(), seed=config.seed, done=done,
        decode=decode, image_column=config.image_column, id_column=config.id_column,
        label_column=config.label_column, rows_per_block=max(layout.batch_size * 4, 64), num_cpus=layout.decode_cpus,
        min_blocks=2 * layout.max_actors,
    )  # fmt: skip

    def manifest(num_rows: int) -> Manifest:
        return Manifest(
            model=spec["model"], weights=spec["weights"], dim=dim, dtype=config.dtype,
            preprocessing=preprocessing, source=plan.description,
            num_rows=num_rows,
            class_names=plan.class_names, raydq_version=raydq_version(),
        )  # fmt: skip

    write_manifest(output, manifest(len(done)))
    writer = ShardWriter(output, dim=dim, dtype=config.dtype, rows_per_shard=config.rows_per_shard)
    failures = FailureReport(output)
    ds = plan.dataset()
    seen = set(done)
    todo = None if plan.total is None else plan.total - plan.skipped
    try:
        if ds is not None:
            log.info("embed actors: %s", layout)
            ds = _embed_stage(ds, config, layout)
            with _progress(todo, config.progress) as bar:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
                    errors, ids = batch["error"], batch["id"]
                    ok = errors == ""
                    # one row per id: byte sources may hold the same image twice (same content hash)
                    new = np.fromiter(_first_sightings(ids, ok, seen), dtype=bool, count=len(ids))
                    keep = ok & new
                    writer.add(ids[keep], batch["embedding"][keep], batch["uri"][keep], batch["label"][keep])
                    for n in np.flatnonzero(~ok & new):
                        uri = batch["uri"][n]
                        failures.add(str(batch["id"][n]), None if uri is None else str(uri), str(errors[n]))
                    bar.update(len(errors))
        writer.close()
    finally:
        failures.close()
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved  # the caller's Ray Data settings
    total_rows = count_rows(output)
    write_manifest(output, manifest(total_rows))
    seconds = time.perf_counter() - started
    embedded = writer.rows_written
    skipped = len(done) if plan.total is None else max(0, plan.total - embedded - failures.count)
    summary = EmbedSummary(
        images=embedded, images_per_second=embedded / seconds if seconds > 0 else 0.0, seconds=seconds,
        failures=failures.count, skipped=skipped, total_rows=total_rows, output=str(output),
        failures_path=str(failures.path), model=spec["model"], dim=dim,
    )  # fmt: skip
    print(summary.line(), flush=True)
    return summary

"""Planning the embed job's actor pool for a cluster: GPU pools that grow with the autoscaler, batch size and
precision per device, CPU pools that stay fixed. Pure functions on fake clusters, then one real Ray Data run of an
autoscaling pool on this CPU machine."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from raydq.embed import EmbedConfig
from raydq.embed.pipeline import (
    CPU_BATCH_SIZE,
    GPU_BATCH_SIZE,
    ActorLayout,
    _embed_stage,
    actor_pool,
    cpus_per_fit,
    gpus_per_actor,
    plan_actors,
)

GPU_NODE = {"CPU": 32.0, "GPU": 4.0, "memory": 2e11}
AMPERE, TURING = (8, 0), (7, 5)


def _plan(cluster, capability=None, single_node=True, free_node_cpus=None, **config) -> ActorLayout:
    return plan_actors(EmbedConfig(**config), cluster, single_node=single_node, cuda_capability=capability,
                       free_node_cpus=free_node_cpus)  # fmt: skip


def test_gpu_cluster_starts_one_actor_per_gpu_and_may_shrink_to_one():
    layout = _plan(GPU_NODE, AMPERE)
    assert (layout.device, layout.num_gpus) == ("cuda", 1.0)
    assert (layout.actors, layout.min_actors, layout.max_actors) == (4, 1, 4)
    assert layout.batch_size == GPU_BATCH_SIZE == 256


def test_gpu_pool_grows_to_max_actors_as_gpu_nodes_join():
    """A GPU group that autoscales from 4 GPUs to 16 gets up to 16 actors; it starts with the 4 present."""
    layout = _plan(GPU_NODE, AMPERE, max_actors=16)
    assert (layout.actors, layout.min_actors, layout.max_actors) == (4, 1, 16)
    capped = _plan(GPU_NODE, AMPERE, max_actors=2)
    assert (capped.actors, capped.min_actors, capped.max_actors) == (2, 1, 2)


def test_gpu_pool_on_a_cluster_whose_gpu_nodes_are_not_up_yet():
    """minReplicas 0: no GPU yet. With max_actors the pool starts one actor (the autoscaler's cue); without, the
    job refuses rather than wait for GPUs that may never come."""
    cpu_head = {"CPU": 4.0}
    layout = _plan(cpu_head, None, num_gpus_per_actor=1, max_actors=8)
    assert (layout.device, layout.actors, layout.min_actors, layout.max_actors) == ("cuda", 1, 1, 8)
    with pytest.raises(ValueError, match="max_actors"):
        _plan(cpu_head, None, num_gpus_per_actor=1)


def test_fractional_gpus_and_a_fixed_pool():
    two_gpus = {"CPU": 16.0, "GPU": 2.0}
    half = _plan(two_gpus, AMPERE, num_gpus_per_actor=0.5)
    assert (half.num_gpus, half.actors, half.max_actors) == (0.5, 4, 4)
    fixed = _plan(two_gpus, AMPERE, actors=3)
    assert (fixed.actors, fixed.min_actors, fixed.max_actors) == (3, 3, 3)


@pytest.mark.parametrize(
    ("capability", "precision"),
    [(AMPERE, "bf16"), ((9, 0), "bf16"), (TURING, "fp16"), ((7, 0), "fp16"), (None, "fp16")],
)
def test_gpu_precision_auto_follows_the_probed_capability(capability, precision):
    assert _plan(GPU_NODE, capability).precision == precision
    assert _plan(GPU_NODE, capability, precision="fp32").precision == "fp32"  # an explicit choice is kept


def test_cpu_cluster_keeps_todays_fixed_pool_and_batch():
    layout = _plan({"CPU": 2.0}, None)
    assert (layout.device, layout.num_gpus, layout.batch_size) == ("cpu", 0.0, CPU_BATCH_SIZE)
    assert layout.actors == layout.min_actors == layout.max_actors == 2
    assert layout.num_cpus * layout.actors <= 1.0  # a decode task keeps a CPU (Ray #44687)
    assert layout.precision in ("bf16", "fp32")
    assert _plan({"CPU": 2.0}, None, batch_size=8).batch_size == 8
    assert _plan(GPU_NODE, AMPERE, batch_size=64).batch_size == 64
    forced_cpu = _plan(GPU_NODE, AMPERE, num_gpus_per_actor=0)
    assert (forced_cpu.device, forced_cpu.batch_size) == ("cpu", CPU_BATCH_SIZE)


def test_a_cpu_pool_fits_beside_a_running_service_and_a_decode_task():
    """A service on the cluster holds CPUs: the pool keeps its size but reserves less per actor, so the actors and
    one decode task fit in what is free on the nodes (sized from the totals, 4 one-CPU actors would leave no node a
    whole CPU for the read tasks: the embed run would hang)."""
    free = [1.45, 1.75, 1.75]  # three 2-CPU nodes; a service's replicas and shard actors hold the rest
    layout = _plan({"CPU": 6.0}, None, single_node=False, free_node_cpus=free)
    assert layout.actors == 4 and layout.num_cpus < 1.0
    room = sorted(free)
    room[-1] -= 1.0  # the decode task's CPU on the freest node
    assert sum(int(r // layout.num_cpus) for r in room) >= layout.actors
    assert _plan({"CPU": 6.0}, None, single_node=False, free_node_cpus=[2.0, 2.0, 2.0]).num_cpus == 1.0  # idle
    assert cpus_per_fit([2.0], 2, 1.0, 1.0) == 0.5  # one idle 2-CPU node: today's 2 x 0.5
    assert cpus_per_fit([0.5, 0.2], 2, 1.0, 1.0) == 0.1  # both in the 0.2 CPUs the decode task leaves
    assert cpus_per_fit([0.0, 0.0], 2, 1.0, 1.0) == 0.01  # nothing free: the actors share what frees up
    assert cpus_per_fit([3.0], 2, 0.5, 1.0) == 0.5  # never more than asked


def test_pool_size_settings_that_contradict_each_other_are_refused():
    with pytest.raises(ValidationError, match=r"actors .*max_actors"):
        EmbedConfig(actors=2, max_actors=4)
    with pytest.raises(ValueError, match="max_actors"):
        _plan({"CPU": 8.0}, None, max_actors=4)  # CPU pools stay fixed
    with pytest.raises(ValueError, match="num_gpus_per_actor=2"):
        _plan({"CPU": 8.0, "GPU": 1.0}, AMPERE, num_gpus_per_actor=2)


def test_gpus_per_actor_defaults():
    assert gpus_per_actor(EmbedConfig(), {"CPU": 8.0}) == 0.0
    assert gpus_per_actor(EmbedConfig(), {"CPU": 8.0, "GPU": 1.0}) == 1.0
    assert gpus_per_actor(EmbedConfig(num_gpus_per_actor=0.25), {"CPU": 8.0}) == 0.25


def test_actor_pool_strategy_is_fixed_or_autoscaling():
    fixed = actor_pool(_plan({"CPU": 2.0}, None))
    assert (fixed.min_size, fixed.max_size) == (2, 2)
    scaling = actor_pool(_plan(GPU_NODE, AMPERE, max_actors=8))
    assert (scaling.min_size, scaling.max_size, scaling.initial_size) == (1, 8, 4)


@pytest.mark.slow
def test_an_autoscaling_pool_embeds_every_row_on_cpu(ray_cluster):
    """The autoscaling pool's arguments run through Ray Data 2.60 end to end (on CPU actors: no GPU here)."""
    import ray

    from raydq.models import create_encoder

    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    rows = [{"id": f"r{i}", "uri": None, "label": i % 3, "error": "", "image": im} for i, im in enumerate(images)]
    layout = ActorLayout(
        actors=1, min_actors=1, max_actors=2, num_gpus=0.0, num_cpus=0.4, torch_threads=1, device="cpu",
        precision="fp32", batch_size=4,
    )  # fmt: skip
    ds = _embed_stage(ray.data.from_items(rows, override_num_blocks=3), EmbedConfig(), layout)
    out = sorted(ds.take_all(), key=lambda r: int(r["id"][1:]))
    assert [r["id"] for r in out] == [f"r{i}" for i in range(12)]
    expected = create_encoder(device="cpu").encode(images)
    np.testing.assert_allclose(np.stack([r["embedding"] for r in out]), expected, rtol=1e-4, atol=1e-4)


"""The KubeRay deployment (k8s/, Dockerfile) validated offline, and each validator shown to catch a planted mistake."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from tests.k8s import sync_cluster_spec
from tests.k8s.dockerfile import build_args, shell_steps
from tests.k8s.image import _offers_gpus, platform_cuda, platform_of, torch_cuda
from tests.k8s.mistakes import MISTAKES
from tests.k8s.validators import (
    CHECKS,
    ManifestError,
    Project,
    dockerfile_from,
    parse_python_command,
    script_flags,
)

ROOT = Path(__file__).resolve().parents[1]


def _load_check_image():
    """k8s/check_image.py, the script the Dockerfile runs (k8s/ is not a package: loaded from its path)."""
    spec = importlib.util.spec_from_file_location("check_image", ROOT / "k8s" / "check_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_image = _load_check_image()


@pytest.fixture(scope="module")
def project() -> Project:
    return Project.load()


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_deployment_passes(project: Project, check: str) -> None:
    CHECKS[check](project)


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_planted_mistake_is_caught(project: Project, mistake) -> None:
    broken = project.copy()
    mistake.apply(broken)
    assert broken != project, "the mistake changed nothing"
    with pytest.raises(ManifestError, match=mistake.expect):
        CHECKS[mistake.check](broken)


def test_every_check_has_a_planted_mistake() -> None:
    assert {m.check for m in MISTAKES} == set(CHECKS)
    assert len({m.id for m in MISTAKES}) == len(MISTAKES)


def test_copies_do_not_leak_into_the_original(project: Project) -> None:
    before = Project.load()
    for mistake in MISTAKES:
        mistake.apply(project.copy())
    assert project == before


def test_validation_needs_no_network(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """kubernetes-validate ships its schemas, and the project's schema has no remote $ref: no socket is opened."""

    def refuse(*args, **kwargs):
        raise AssertionError("validation tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for check in ("crd_schema", "pod_templates"):
        CHECKS[check](project)


def test_sync_reproduces_the_committed_manifests_structurally() -> None:
    """The sync tool, run on the sources, yields manifests that parse to what is committed (text may differ)."""
    body = sync_cluster_spec.spec_body((sync_cluster_spec.K8S / sync_cluster_spec.SOURCE).read_text())
    for name, key_line in sync_cluster_spec.EMBEDDINGS.items():
        current = (sync_cluster_spec.K8S / name).read_text()
        rendered = sync_cluster_spec.render(current, key_line, body)
        if name == "rayservice.yaml":
            rendered = sync_cluster_spec.render_serve_config(rendered, sync_cluster_spec.SERVE_SOURCE.read_text())
        assert yaml.safe_load(rendered) == yaml.safe_load(current), name


def test_sync_rewrites_a_drifted_copy() -> None:
    source = "kind: RayCluster\nspec:\n  rayVersion: '2.60.0'\n  # note\n  headGroupSpec: {}\n"
    drifted = "kind: RayJob\nspec:\n  entrypoint: python x.py\n  rayClusterSpec:\n    rayVersion: '2.59.0'\n"
    body = sync_cluster_spec.spec_body(source)
    out = sync_cluster_spec.render(drifted, "  rayClusterSpec:", body)
    assert out.endswith("  rayClusterSpec:\n    rayVersion: '2.60.0'\n    # note\n    headGroupSpec: {}\n")
    assert "entrypoint: python x.py" in out


def test_dockerfile_from_substitutes_args() -> None:
    text = "ARG V=2.60.0\nARG VARIANT=py311-gpu\nFROM rayproject/ray:${V}-$VARIANT AS base\nARG V\n"
    assert dockerfile_from(text) == "rayproject/ray:2.60.0-py311-gpu"


def test_command_parsing_reads_flags_after_ray_job_submit() -> None:
    command = parse_python_command(
        "ray job submit --address http://127.0.0.1:8265 --working-dir . -- python jobs/embed.py --source=s3://b/i "
        "--output s3://b/e --fp16"
    )
    assert command.script == "jobs/embed.py"
    assert command.flags == ["--source", "--output", "--fp16"]
    assert command.values == {"--source": "s3://b/i", "--output": "s3://b/e"}
    with pytest.raises(ManifestError, match="not `python SCRIPT"):
        parse_python_command("bash -c 'python jobs/embed.py'")


def test_error_messages_name_file_and_field(project: Project) -> None:
    broken = project.copy()
    next(m for m in MISTAKES if m.id == "misspelt-minReplicas").apply(broken)
    with pytest.raises(ManifestError) as info:
        CHECKS["crd_schema"](broken)
    assert re.search(r"k8s/raycluster\.yaml: RayCluster spec\.workerGroupSpecs\.0", str(info.value))


def test_script_flags_reads_literal_and_model_driven_options(tmp_path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "config.py").write_text(
        "from pydantic import BaseModel\nclass Cfg(BaseModel):\n    num_gpus: float = 1\n    _private: int = 0\n"
    )
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg.config import Cfg\n")
    literal = tmp_path / "literal.py"
    literal.write_text("import argparse\np = argparse.ArgumentParser()\np.add_argument('--source')\n")
    driven = tmp_path / "driven.py"
    driven.write_text("from pkg import Cfg\nfor name in Cfg.model_fields:\n    pass\n")
    assert script_flags(tmp_path, literal) == {"--source"}
    assert script_flags(tmp_path, driven) == {"--num-gpus"}


def test_torch_cuda_table_matches_the_torch_installed_from_pypi(project: Project) -> None:
    """TORCH_CUDA's entry for the pin is what PyPI served to this environment: torch/version.py of the installed
    wheel records its CUDA line (read as text; importing torch is not needed)."""
    dist = importlib.metadata.distribution("torch")
    installed = Version(dist.version)
    pinned, cuda = torch_cuda(project.pyproject)
    if installed.release != pinned.release:
        pytest.skip(f"torch {installed} is installed, not the pinned {pinned}")
    text = Path(dist.locate_file("torch/version.py")).read_text()
    installed_cuda = re.search(r"^cuda\s*(?::[^=]*)?=\s*'([\d.]+)'", text, re.MULTILINE)
    assert installed_cuda, "torch/version.py names no CUDA: a CPU wheel is installed"
    assert installed_cuda[1] == cuda


@pytest.mark.parametrize(
    ("image", "platform", "cuda"),
    [
        ("rayproject/ray:2.60.0-py311-cu130", "cu130", "13.0"),
        ("rayproject/ray:2.60.0-py311-gpu", "gpu", "12.1"),
        ("rayproject/ray:2.60.0-py312-cu128-aarch64", "cu128", "12.8"),
        ("rayproject/ray:2.60.0-py311-cu118", "cu118", "11.8"),
        ("rayproject/ray:2.60.0-py311", "cpu", None),
        ("rayproject/ray:2.60.0-py311-cpu", "cpu", None),
    ],
)
def test_ray_image_platform_tags(image: str, platform: str, cuda: str | None) -> None:
    assert platform_of(image) == platform
    assert platform_cuda(platform) == cuda


def test_dockerfile_build_args_and_shell_steps() -> None:
    text = (
        'ARG V=2.60.0\nARG EXTRAS="[gpu]"\nFROM rayproject/ray:${V}\nARG V\nARG EXTRAS\n'
        "RUN pip uninstall -y a \\\n    && pip install .$EXTRAS; echo ${V} ${UNKNOWN}\n"
    )
    assert build_args(text) == {"V": "2.60.0", "EXTRAS": "[gpu]"}  # a stage's bare ARG keeps the global default
    assert shell_steps(text) == ["pip uninstall -y a", "pip install .[gpu]", "echo 2.60.0 ${UNKNOWN}"]


def test_a_gpu_group_is_one_that_offers_ray_gpus_or_asks_kubernetes_for_them() -> None:
    container = {"name": "w", "image": "x", "resources": {"limits": {"cpu": "1"}}}
    group = {"rayStartParams": {}, "template": {"spec": {"containers": [container]}}}
    assert not _offers_gpus(group)
    assert _offers_gpus({**group, "rayStartParams": {"num-gpus": "2"}})
    container["resources"]["limits"]["nvidia.com/gpu"] = "1"
    assert _offers_gpus(group)


def test_image_check_counts_cupy_distributions_and_cuda_lines() -> None:
    names = ["numpy", "cupy-cuda12x", "CuPy_CUDA13x", "cupy", "cupy-rocm-6-0", "cupyx-extra", "cuml-cu13"]
    assert check_image.cupy_distributions(names) == ["cupy", "cupy-cuda12x", "cupy-cuda13x", "cupy-rocm-6-0"]
    assert check_image.cuda_mismatch("13.0", "13.0.0") is None
    assert check_image.cuda_mismatch("13.0", None) is None  # a base without CUDA_VERSION: nothing to compare
    assert "base image is CUDA 12.1.1" in check_image.cuda_mismatch("13.0", "12.1.1")
    assert "CPU wheel" in check_image.cuda_mismatch(None, "13.0.0")


def test_image_check_passes_this_environment_as_a_cpu_image_and_fails_it_as_a_gpu_image() -> None:
    """The script the Dockerfile runs, run here: Ray and raydq are fine; without cuML and CuPy it refuses the GPU
    image (this machine has neither), and a wrong Ray pin fails either kind."""
    import ray

    assert check_image.check(ray.__version__, gpu=False) == []
    assert check_image.check("2.59.0", gpu=False) == [f"Ray is {ray.__version__}, not the pinned 2.59.0"]
    if importlib.util.find_spec("cuml") is not None:
        pytest.skip("cuML is installed here")
    command = [sys.executable, "k8s/check_image.py", "--ray-version", ray.__version__, "--extras", "[gpu]"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "cannot import cuml" in run.stderr and "exactly one CuPy distribution, found none" in run.stderr
    cpu = subprocess.run([*command[:-2], "--extras", ""], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (cpu.returncode, cpu.stdout.strip()) == (0, "k8s/check_image.py: CPU image OK")

"""The KubeRay deployment (k8s/, Dockerfile) validated offline, and each validator shown to catch a planted mistake."""

from __future__ import annotations

import re
import socket

import pytest
import yaml

from tests.k8s import sync_cluster_spec
from tests.k8s.mistakes import MISTAKES
from tests.k8s.validators import (
    CHECKS,
    ManifestError,
    Project,
    dockerfile_from,
    parse_python_command,
    script_flags,
)


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

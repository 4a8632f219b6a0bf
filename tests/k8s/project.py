"""The deployment files of a checkout, parsed (`Project`), and how to walk the Ray resources in them.

Shared by the checks in validators.py and image.py; nothing here judges a file.
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RAY_KINDS = ("RayCluster", "RayService", "RayJob")


class ManifestError(ValueError):
    """A deployment file is wrong; the message names the file and the field."""


@dataclass
class Project:
    """The deployment files of a checkout, parsed once; checks read it, planted mistakes edit a copy."""

    root: Path
    manifest_texts: dict[str, str]
    docs: dict[str, list[dict[str, Any]]]
    dockerfile: str
    dockerignore: str
    pyproject: dict[str, Any]
    serve_config: dict[str, Any] | None
    readme: str
    schema: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, root: Path = ROOT) -> Project:
        texts = {p.name: p.read_text() for p in sorted((root / "k8s").glob("*.yaml"))}
        serve_path = root / "serve_configs" / "cluster.yaml"
        readme = root / "k8s" / "README.md"
        return cls(
            root=root,
            manifest_texts=texts,
            docs={name: _load_all(name, text) for name, text in texts.items()},
            dockerfile=(root / "Dockerfile").read_text(),
            dockerignore=(root / ".dockerignore").read_text() if (root / ".dockerignore").exists() else "",
            pyproject=tomllib.loads((root / "pyproject.toml").read_text()),
            serve_config=yaml.safe_load(serve_path.read_text()) if serve_path.exists() else None,
            readme=readme.read_text() if readme.exists() else "",
            schema=json.loads((root / "k8s" / "schema" / "kuberay-v1.schema.json").read_text()),
        )

    def copy(self) -> Project:
        return copy.deepcopy(self)

    def resources(self, kind: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(file name, document) for each Ray custom resource, or only those of `kind`."""
        for name, docs in self.docs.items():
            for doc in docs:
                if doc.get("kind") in RAY_KINDS and (kind is None or doc["kind"] == kind):
                    yield name, doc

    def one(self, kind: str) -> dict[str, Any]:
        found = [doc for _, doc in self.resources(kind)]
        if len(found) != 1:
            raise ManifestError(f"k8s/: expected exactly one {kind}, found {len(found)}")
        return found[0]


def _load_all(name: str, text: str) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ManifestError(f"k8s/{name}: not valid YAML: {e}") from e
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise ManifestError(f"k8s/{name}: document {i} is a {type(doc).__name__}, not a mapping")
    return docs


def _raise(problems: list[str]) -> None:
    if problems:
        raise ManifestError("\n".join(problems))


def _where(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<root>"


CLUSTER_SPEC_KEY = {"RayCluster": None, "RayService": "rayClusterConfig", "RayJob": "rayClusterSpec"}


def cluster_spec(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(path, RayClusterSpec) of a Ray resource: its spec, or the spec it embeds."""
    key = CLUSTER_SPEC_KEY[doc["kind"]]
    spec = doc.get("spec", {})
    return ("spec", spec) if key is None else (f"spec.{key}", spec.get(key) or {})


def pod_templates(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, PodTemplateSpec) of every pod a Ray resource makes: head, each worker group, a job submitter."""
    where, spec = cluster_spec(doc)
    head = spec.get("headGroupSpec", {})
    if "template" in head:
        yield f"{where}.headGroupSpec.template", head["template"]
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        if "template" in group:
            yield f"{where}.workerGroupSpecs[{i}]({group.get('groupName')}).template", group["template"]
    if doc["kind"] == "RayJob" and "submitterPodTemplate" in doc["spec"]:
        yield "spec.submitterPodTemplate", doc["spec"]["submitterPodTemplate"]


def containers(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = template.get("spec") or {}
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def _cpus(quantity: Any) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def worker_shapes(doc: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(group, CPUs, GPUs) that one pod of each worker group offers Ray (from the first container's limits)."""
    shapes = []
    for group in cluster_spec(doc)[1].get("workerGroupSpecs") or []:
        c = next(iter((group.get("template") or {}).get("spec", {}).get("containers") or []), {})
        limits = (c.get("resources") or {}).get("limits") or {}
        params = group.get("rayStartParams") or {}
        cpus = _cpus(params.get("num-cpus", limits.get("cpu", 0)))
        gpus = float(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))
        shapes.append((str(group.get("groupName")), cpus, gpus))
    return shapes

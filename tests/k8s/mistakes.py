"""Planted mistakes: each edits a copy of the deployment in memory and names the check that must catch it.

One or more per check in validators.CHECKS; tests/test_k8s.py applies each to `Project.copy()` and expects the named
check to raise ManifestError with a message matching `expect`. Nothing here touches the files on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from tests.k8s.validators import Project, cluster_spec


@dataclass(frozen=True)
class Mistake:
    id: str
    check: str
    expect: str  # regex the error message must match
    apply: Callable[[Project], None]


def _spec(p: Project, kind: str) -> dict[str, Any]:
    return cluster_spec(p.one(kind))[1]


def _group(p: Project, kind: str, name: str) -> dict[str, Any]:
    return next(g for g in _spec(p, kind)["workerGroupSpecs"] if g["groupName"] == name)


def _container(p: Project, kind: str, group: str | None) -> dict[str, Any]:
    spec = _spec(p, kind)
    holder = spec["headGroupSpec"] if group is None else _group(p, kind, group)
    return holder["template"]["spec"]["containers"][0]


def _env(p: Project, kind: str, group: str | None, var: str) -> dict[str, Any]:
    return next(e for e in _container(p, kind, group)["env"] if e["name"] == var)


def _edit_serve(p: Project, edit: Callable[[dict[str, Any]], None]) -> None:
    spec = p.one("RayService")["spec"]
    config = yaml.safe_load(spec["serveConfigV2"])
    edit(config)
    spec["serveConfigV2"] = yaml.safe_dump(config, sort_keys=False)


def _edit_entrypoint(p: Project, old: str, new: str) -> None:
    spec = p.one("RayJob")["spec"]
    assert old in spec["entrypoint"], (old, spec["entrypoint"])
    spec["entrypoint"] = spec["entrypoint"].replace(old, new)


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def _text(p: Project, name: str, old: str, new: str) -> None:
    p.manifest_texts[name] = _replace(p.manifest_texts[name], old, new)


def _dockerfile(p: Project, old: str, new: str) -> None:
    p.dockerfile = _replace(p.dockerfile, old, new)


def _readme(p: Project, old: str, new: str) -> None:
    p.readme = _replace(p.readme, old, new)


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    target[key] = value


def _rename(target: dict[str, Any], old: str, new: str) -> None:
    target[new] = target.pop(old)


def _actor_options(config: dict[str, Any], deployment: str) -> dict[str, Any]:
    """ray_actor_options of a deployment in the first application, created if the config names none."""
    deployments = config["applications"][0].setdefault("deployments", [])
    entry = next((d for d in deployments if d.get("name") == deployment), None)
    if entry is None:
        entry = {"name": deployment}
        deployments.append(entry)
    return entry.setdefault("ray_actor_options", {})


def _duplicate_app(config: dict[str, Any]) -> None:
    config["applications"].append(dict(config["applications"][0], route_prefix="/again"))


def _set_pin(p: Project, old: str, new: str) -> None:
    deps = p.pyproject["project"]["dependencies"]
    deps[deps.index(old)] = new


def _set_extra(p: Project, old: str, new: str | None) -> None:
    """Replace (or, with None, remove) a requirement of the gpu extra."""
    extra = p.pyproject["project"]["optional-dependencies"]["gpu"]
    i = extra.index(old)
    if new is None:
        del extra[i]
    else:
        extra[i] = new


def _add_extra(p: Project, requirement: str) -> None:
    p.pyproject["project"]["optional-dependencies"]["gpu"].append(requirement)


INSTALL_RUN = (
    "RUN pip uninstall -y cupy-cuda12x \\\n"
    '    && pip install --no-cache-dir ".${RAYDQ_EXTRAS}" \\\n'
    '    && python k8s/check_image.py --ray-version "${RAY_VERSION}" --extras "${RAYDQ_EXTRAS}"'
)


def _gpu_request_without_limit(p: Project) -> None:
    del _container(p, "RayCluster", "gpu")["resources"]["requests"]["nvidia.com/gpu"]


def _head_gpu(p: Project) -> None:
    resources = _container(p, "RayCluster", None)["resources"]
    resources["requests"]["nvidia.com/gpu"] = "1"
    resources["limits"]["nvidia.com/gpu"] = "1"


def _inline_secret(p: Project) -> None:
    entry = _env(p, "RayService", "gpu", "RAYDQ_DATABASE_URL")
    entry.pop("valueFrom")
    entry["value"] = "postgresql+psycopg://raydq:hunter2@db:5432/raydq"


def _drop_env(p: Project, kind: str, var: str) -> None:
    container = _container(p, kind, None)
    container["env"] = [e for e in container["env"] if e["name"] != var]


def _inline_serve_db_url(p: Project) -> None:
    assert p.serve_config is not None, "serve_configs/cluster.yaml is missing"
    p.serve_config["applications"][0].setdefault("args", {})["database_url"] = "postgresql://raydq:hunter2@db/raydq"


MISTAKES: list[Mistake] = [
    # every manifest parses
    Mistake(
        "unclosed-flow-list",
        "parses",
        "not valid YAML",
        lambda p: _text(p, "rayservice.yaml", "  serveConfigV2: |", "  serveConfigV2: [unclosed\n  x: |"),
    ),
    Mistake("kind-deleted", "parses", "lacks kind", lambda p: _text(p, "rayjob-embed.yaml", "kind: RayJob", "")),
    # the Ray custom resources against k8s/schema/kuberay-v1.schema.json
    Mistake(
        "misspelt-minReplicas",
        "crd_schema",
        "minReplica",
        lambda p: _rename(_group(p, "RayCluster", "gpu"), "minReplicas", "minReplica"),
    ),
    Mistake(
        "replicas-as-string",
        "crd_schema",
        "is not of type 'integer'",
        lambda p: _set(_group(p, "RayJob", "gpu"), "replicas", "2"),
    ),
    Mistake(
        "misspelt-autoscaling-key",
        "crd_schema",
        "enableInTreeAutoScaling",
        lambda p: _rename(_spec(p, "RayService"), "enableInTreeAutoscaling", "enableInTreeAutoScaling"),
    ),
    Mistake(
        "unknown-auth-mode",
        "crd_schema",
        "authOptions.mode",
        lambda p: _set(_spec(p, "RayCluster")["authOptions"], "mode", "password"),
    ),
    # pod templates against the Kubernetes schema (kubernetes-validate, strict)
    Mistake(
        "container-resource-typo",
        "pod_templates",
        "'resource' was unexpected",
        lambda p: _rename(_container(p, "RayService", None), "resources", "resource"),
    ),
    Mistake(
        "port-as-string",
        "pod_templates",
        "containerPort",
        lambda p: _set(_container(p, "RayJob", None)["ports"][0], "containerPort", "6379"),
    ),
    Mistake(
        "secret-ref-without-key",
        "pod_templates",
        "'key' is a required property",
        lambda p: _env(p, "RayCluster", "gpu", "RAYDQ_API_TOKEN")["valueFrom"]["secretKeyRef"].pop("key"),
    ),
    # serveConfigV2 against ServeDeploySchema
    Mistake(
        "import-path-without-module",
        "serve_schema",
        "import path",
        lambda p: _edit_serve(p, lambda c: _set(c["applications"][0], "import_path", "build_app")),
    ),
    Mistake("duplicate-application", "serve_schema", "multiple configs", lambda p: _edit_serve(p, _duplicate_app)),
    Mistake(
        "serve-config-not-yaml",
        "serve_schema",
        "not valid YAML",
        lambda p: _set(p.one("RayService")["spec"], "serveConfigV2", "applications: [unclosed"),
    ),
    # serveConfigV2 = serve_configs/cluster.yaml's applications
    Mistake(
        "route-prefix-drift",
        "serve_matches_config",
        r"applications\[0\]\.route_prefix",
        lambda p: _edit_serve(p, lambda c: _set(c["applications"][0], "route_prefix", "/v2")),
    ),
    Mistake(
        "app-name-drift",
        "serve_matches_config",
        r"applications\[0\]\.name",
        lambda p: _edit_serve(p, lambda c: _set(c["applications"][0], "name", "raydq-old")),
    ),
    # rayVersion = image's Ray = pinned ray
    Mistake(
        "rayVersion-behind",
        "versions",
        r"rayVersion '2\.59\.0'",
        lambda p: _set(_spec(p, "RayService"), "rayVersion", "2.59.0"),
    ),
    Mistake(
        "base-image-behind",
        "versions",
        r"Ray 2\.59\.0",
        lambda p: _dockerfile(p, "ARG RAY_VERSION=2.60.0", "ARG RAY_VERSION=2.59.0"),
    ),
    Mistake(
        "pin-moved-on",
        "versions",
        r"ray==2\.61\.\*",
        lambda p: _set_pin(p, "ray[data,serve]==2.60.*", "ray[data,serve]==2.61.*"),
    ),
    Mistake(
        "base-image-python-too-old",
        "versions",
        "requires-python",
        lambda p: _dockerfile(p, "ARG PYTHON_TAG=py311", "ARG PYTHON_TAG=py310"),
    ),
    Mistake(
        "not-ray-image",
        "versions",
        "not Ray's image",
        lambda p: _dockerfile(p, "FROM rayproject/ray:", "FROM nvidia/cuda:"),
    ),
    # the base image's CUDA line = the pinned torch's; the README names its driver
    Mistake(
        "base-image-on-rays-default-cuda",
        "cuda_line",
        r"CUDA 12\.1 \(`gpu` is Ray's default CUDA line\).*torch 2\.14\.1.*CUDA 13\.0: use Ray's cu130",
        lambda p: _dockerfile(p, "ARG RAY_PLATFORM=cu130", "ARG RAY_PLATFORM=gpu"),
    ),
    Mistake(
        "base-image-cuda-12-8",
        "cuda_line",
        r"is CUDA 12\.8, but",
        lambda p: _dockerfile(p, "ARG RAY_PLATFORM=cu130", "ARG RAY_PLATFORM=cu128"),
    ),
    Mistake(
        "default-build-is-cpu",
        "cuda_line",
        r"has no CUDA \(cpu\)",
        lambda p: _dockerfile(p, "ARG RAY_PLATFORM=cu130", "ARG RAY_PLATFORM=cpu"),
    ),
    Mistake(
        "torch-pin-moved-on",
        "cuda_line",
        r"records no CUDA line for torch 2\.15",
        lambda p: _set_pin(p, "torch==2.14.1", "torch==2.15.0"),
    ),
    Mistake(
        "torch-unpinned",
        "cuda_line",
        "torch must be pinned with one `==`",
        lambda p: _set_pin(p, "torch==2.14.1", "torch>=2.14"),
    ),
    Mistake(
        "readme-forgets-the-driver",
        "cuda_line",
        "needs NVIDIA driver R580 or newer",
        lambda p: _readme(p, "R580", "a recent driver"),
    ),
    # the GPU image installs cuML and exactly one CuPy, and checks it
    Mistake(
        "gpu-extra-cupy-for-cuda-12",
        "gpu_packages",
        "cupy-cuda12x.*must be cupy-cuda13x",
        lambda p: _set_extra(p, "cupy-cuda13x>=14,<15", "cupy-cuda12x>=13,<14"),
    ),
    Mistake(
        "gpu-extra-cuml-unbounded",
        "gpu_packages",
        "cuml-cu13>=26.10 has no upper bound",
        lambda p: _set_extra(p, "cuml-cu13==26.10.*", "cuml-cu13>=26.10"),
    ),
    Mistake(
        "gpu-extra-two-cupys",
        "gpu_packages",
        "one cupy and one cuml",
        lambda p: _add_extra(p, "cupy-cuda12x<14"),
    ),
    Mistake(
        "gpu-extra-without-cuml",
        "gpu_packages",
        "one cupy and one cuml",
        lambda p: _set_extra(p, "cuml-cu13==26.10.*", None),
    ),
    Mistake(
        "gpu-extra-not-installed-by-default",
        "gpu_packages",
        "not the gpu extra",
        lambda p: _dockerfile(p, 'ARG RAYDQ_EXTRAS="[gpu]"', 'ARG RAYDQ_EXTRAS=""'),
    ),
    Mistake(
        "rays-cupy-kept",
        "gpu_packages",
        "cupy-cuda12x is not uninstalled",
        lambda p: _dockerfile(p, "RUN pip uninstall -y cupy-cuda12x \\\n    && pip install", "RUN pip install"),
    ),
    Mistake(
        "rays-cupy-uninstalled-after-install",
        "gpu_packages",
        "runs after raydq's install; it must come before",
        lambda p: _dockerfile(
            p,
            INSTALL_RUN,
            'RUN pip install --no-cache-dir ".${RAYDQ_EXTRAS}" \\\n    && pip uninstall -y cupy-cuda12x \\\n'
            '    && python k8s/check_image.py --ray-version "${RAY_VERSION}" --extras "${RAYDQ_EXTRAS}"',
        ),
    ),
    Mistake(
        "image-not-checked",
        "gpu_packages",
        "no RUN step runs k8s/check_image.py",
        lambda p: _dockerfile(
            p, INSTALL_RUN, 'RUN pip uninstall -y cupy-cuda12x \\\n    && pip install --no-cache-dir ".${RAYDQ_EXTRAS}"'
        ),
    ),
    Mistake(
        "image-check-not-told-gpu",
        "gpu_packages",
        "skips the GPU checks",
        lambda p: _dockerfile(p, ' --extras "${RAYDQ_EXTRAS}"', ""),
    ),
    # one image; GPU pods run the GPU image; the README builds the tags the manifests run
    Mistake(
        "gpu-group-on-the-cpu-image",
        "images",
        r"workerGroupSpecs\[0\]\(gpu\) offers GPUs but runs raydq:0\.1\.0-cpu, not the GPU image raydq:0\.1\.0-cu130",
        lambda p: _set(_container(p, "RayCluster", "gpu"), "image", "raydq:0.1.0-cpu"),
    ),
    Mistake(
        "image-of-an-older-release",
        "images",
        r"runs raydq:0\.0\.9-cu130; expected raydq:0\.1\.0-<platform>",
        lambda p: _set(_container(p, "RayJob", None), "image", "raydq:0.0.9-cu130"),
    ),
    Mistake(
        "cpu-group-on-another-image",
        "images",
        "run different images",
        lambda p: _set(_container(p, "RayService", "cpu"), "image", "raydq:0.1.0-cpu"),
    ),
    Mistake(
        "readme-builds-an-untagged-image",
        "images",
        r"builds platform cu130, so tag it raydq:0\.1\.0-cu130",
        lambda p: _readme(p, "docker build -t raydq:0.1.0-cu130 .", "docker build -t raydq:0.1.0 ."),
    ),
    Mistake(
        "readme-cpu-build-keeps-the-gpu-extra",
        "images",
        "builds a CPU image with the gpu extra",
        lambda p: _readme(p, " --build-arg RAYDQ_EXTRAS= ", " "),
    ),
    # the Dockerfile installs raydq
    Mistake(
        "no-pip-install",
        "dockerfile",
        "installs raydq",
        lambda p: _dockerfile(p, 'pip install --no-cache-dir ".${RAYDQ_EXTRAS}"', "echo skipped"),
    ),
    Mistake(
        "jobs-not-copied",
        "dockerfile",
        "jobs is not copied",
        lambda p: _dockerfile(p, "COPY --chown=ray:users jobs ./jobs", ""),
    ),
    Mistake(
        "dockerignore-drops-jobs",
        "dockerfile",
        "'jobs/' keeps jobs",
        lambda p: setattr(p, "dockerignore", p.dockerignore + "jobs/\n"),
    ),
    Mistake(
        "dockerignore-drops-the-image-check",
        "dockerfile",
        "'k8s' keeps k8s/check_image.py",
        lambda p: setattr(p, "dockerignore", p.dockerignore.replace("!k8s/check_image.py\n", "")),
    ),
    Mistake(
        "dockerignore-drops-a-package",
        "dockerfile",
        "'\\*\\*/data' keeps raydq/data",
        lambda p: setattr(p, "dockerignore", p.dockerignore + "**/data\n"),
    ),
    # import_path and entrypoint exist in the repository
    Mistake(
        "import-path-attribute-missing",
        "repo_references",
        "no top-level 'build_application'",
        lambda p: _edit_serve(
            p, lambda c: _set(c["applications"][0], "import_path", "raydq.serve.app:build_application")
        ),
    ),
    Mistake(
        "import-path-module-missing",
        "repo_references",
        "has no file",
        lambda p: _edit_serve(
            p, lambda c: _set(c["applications"][0], "import_path", "raydq.serve.application:build_app")
        ),
    ),
    Mistake(
        "entrypoint-script-missing",
        "repo_references",
        "not in the repository",
        lambda p: _edit_entrypoint(p, "jobs/embed.py", "jobs/embed_images.py"),
    ),
    Mistake(
        "entrypoint-outside-workdir",
        "repo_references",
        "outside the image's WORKDIR",
        lambda p: _edit_entrypoint(p, "/home/ray/raydq/jobs/embed.py", "/opt/raydq/jobs/embed.py"),
    ),
    Mistake(
        "entrypoint-unknown-flag",
        "repo_references",
        "no option --num-gpus-per-actors",
        lambda p: _edit_entrypoint(p, "--num-gpus-per-actor ", "--num-gpus-per-actors "),
    ),
    # GPU requests = limits; CPU head; a GPU worker group
    Mistake(
        "gpu-limit-above-request",
        "gpu_resources",
        "requests '1' != limits '2'",
        lambda p: _set(_container(p, "RayService", "gpu")["resources"]["limits"], "nvidia.com/gpu", "2"),
    ),
    Mistake("gpu-request-missing", "gpu_resources", "requests None != limits", _gpu_request_without_limit),
    Mistake("gpu-on-head", "gpu_resources", "head must be a CPU node", _head_gpu),
    # min <= replicas <= max
    Mistake(
        "replicas-above-max",
        "replica_bounds",
        "got 1, 10, 8",
        lambda p: _set(_group(p, "RayJob", "gpu"), "replicas", 10),
    ),
    Mistake(
        "min-above-replicas",
        "replica_bounds",
        "got 3, 1, 8",
        lambda p: _set(_group(p, "RayCluster", "gpu"), "minReplicas", 3),
    ),
    # Serve replicas and embedding actors fit in a worker pod
    Mistake(
        "selector-wants-two-gpus",
        "fits",
        "deployment Selector needs 4 CPU 2 GPU",
        lambda p: _edit_serve(p, lambda c: _actor_options(c, "Selector").update(num_cpus=4, num_gpus=2)),
    ),
    Mistake(
        "embed-actor-wants-two-gpus",
        "fits",
        "embedding actor needs 1 CPU 2 GPU",
        lambda p: _edit_entrypoint(p, "--num-gpus-per-actor 1", "--num-gpus-per-actor 2"),
    ),
    Mistake(
        "trainer-too-big",
        "fits",
        "args.trainer_num_cpus needs 16 CPU",
        lambda p: _edit_serve(p, lambda c: c["applications"][0]["args"].update(trainer_num_cpus=16)),
    ),
    # autoscaling
    Mistake(
        "embed-pool-cannot-grow",
        "autoscaling",
        "pass --max-actors 8 to let it grow",
        lambda p: _edit_entrypoint(p, " --max-actors 8", ""),
    ),
    Mistake(
        "embed-pool-smaller-than-the-gpu-group",
        "autoscaling",
        "= 4 GPUs, but the GPU worker groups grow to 8",
        lambda p: _edit_entrypoint(p, "--max-actors 8", "--max-actors 4"),
    ),
    Mistake(
        "autoscaler-off",
        "autoscaling",
        "enableInTreeAutoscaling must be true",
        lambda p: _set(_spec(p, "RayService"), "enableInTreeAutoscaling", False),
    ),
    Mistake(
        "gpu-group-pinned",
        "autoscaling",
        "cannot scale",
        lambda p: _set(_group(p, "RayCluster", "gpu"), "maxReplicas", 1),
    ),
    # the three embedded cluster specs are one
    Mistake(
        "rayjob-spec-drift",
        "shared_cluster_spec",
        r"rayjob-embed\.yaml.*maxReplicas",
        lambda p: _set(_group(p, "RayJob", "gpu"), "maxReplicas", 16),
    ),
    Mistake(
        "rayservice-image-drift",
        "shared_cluster_spec",
        r"rayservice\.yaml.*image",
        lambda p: _set(_container(p, "RayService", "cpu"), "image", "raydq:0.0.9"),
    ),
    # PostgreSQL URL and API token from Secrets
    Mistake("inline-database-url", "secrets", "RAYDQ_DATABASE_URL must come from a Secret", _inline_secret),
    Mistake(
        "token-env-missing",
        "secrets",
        "RAYDQ_API_TOKEN must come from a Secret",
        lambda p: _drop_env(p, "RayJob", "RAYDQ_API_TOKEN"),
    ),
    # embeddings on object storage
    Mistake(
        "embeddings-on-local-disk",
        "object_storage",
        "not an object-store URI",
        lambda p: _edit_entrypoint(p, "--output s3://raydq-data/embeddings/vit-b-32/", "--output /tmp/embeddings"),
    ),
    Mistake(
        "serve-args-typo",
        "serve_schema",
        r"args rejected by raydq\.serve\.config:ServeArgs",
        lambda p: _edit_serve(p, lambda c: c["applications"][0].setdefault("args", {}).update(lease_secnds=60)),
    ),
    Mistake("inline-database-url-in-serve-config", "secrets", "must be a \\$\\{VAR\\} reference", _inline_serve_db_url),
    Mistake(
        "serve-port-not-kuberays",
        "serve_schema",
        "targets 8000",
        lambda p: _edit_serve(p, lambda c: c.setdefault("http_options", {}).update(port=8001)),
    ),
    Mistake(
        "http-options-drift",
        "serve_matches_config",
        r"serveConfigV2\.proxy_location",
        lambda p: _edit_serve(p, lambda c: _set(c, "proxy_location", "HeadOnly")),
    ),
    Mistake(
        "embeddings-written-elsewhere",
        "object_storage",
        "but the Serve app reads",
        lambda p: _edit_entrypoint(p, "--output s3://raydq-data/embeddings/vit-b-32/", "--output s3://raydq-data/emb/"),
    ),
    Mistake(
        "images-from-local-disk",
        "object_storage",
        "--source '/data/images' is a local path",
        lambda p: _edit_entrypoint(p, "--source s3://raydq-data/images/", "--source /data/images"),
    ),
    Mistake(
        "serve-reads-local-embeddings",
        "object_storage",
        "not from object storage",
        lambda p: _edit_serve(p, lambda c: c["applications"][0]["args"].update(embeddings="/data/embeddings")),
    ),
    # the README's commands
    Mistake(
        "readme-applies-missing-file",
        "readme",
        "rayservices.yaml` names no file",
        lambda p: _readme(p, "kubectl apply -f k8s/rayservice.yaml", "kubectl apply -f k8s/rayservices.yaml"),
    ),
    Mistake(
        "readme-forgets-secret",
        "readme",
        "Secret raydq-api is used but never created",
        lambda p: _readme(
            p, "kubectl create secret generic raydq-api ", "kubectl create secret generic raydq-api-token "
        ),
    ),
    Mistake(
        "readme-wrong-service",
        "readme",
        "svc/raydq-serve-svc",
        lambda p: _readme(p, "svc/raydq-serve-serve-svc", "svc/raydq-serve-svc"),
    ),
    Mistake(
        "readme-submits-missing-script",
        "readme",
        "jobs/embedd.py is not in the repository",
        lambda p: _readme(p, "-- python jobs/embed.py", "-- python jobs/embedd.py"),
    ),
    Mistake(
        "readme-curl-unknown-route",
        "readme",
        "no route POST /select",
        lambda p: _readme(p, "http://127.0.0.1:8000/select_batch", "http://127.0.0.1:8000/select"),
    ),
    Mistake(
        "readme-curl-bad-body",
        "readme",
        "rejected by SelectBatchRequest",
        lambda p: _readme(p, """-d '{"batch_size": 10}'""", """-d '{"batch_size": "10"}'"""),
    ),
]

"""Offline checks of the KubeRay deployment: k8s/*.yaml, the Dockerfile and what they point at in the repository.

No cluster runs here, so every check reads files: the manifests against the project's schema of the KubeRay fields it
uses (k8s/schema/) and the pod templates against the Kubernetes schema (kubernetes-validate, which ships its schemas),
the Serve config against Ray's own ServeDeploySchema, and cross-checks between the manifests, the Dockerfile,
pyproject.toml, serve_configs/cluster.yaml, jobs/embed.py and k8s/README.md.

Each check takes a `Project` (the files, parsed, in memory) and raises `ManifestError` listing every problem it found.
Checks never write, so tests plant mistakes in a `Project.copy()` and expect the matching check to fail.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.k8s.dockerfile import (
    RAY_IMAGE,
    copied_sources,
    dockerfile_from,
    dockerfile_workdir,
    ignored_by,
    instructions,
)
from tests.k8s.image import check_cuda_line, check_gpu_packages, check_images
from tests.k8s.project import (
    RAY_KINDS,
    ManifestError,
    Project,
    _load_all,
    _raise,
    _where,
    cluster_spec,
    containers,
    pod_templates,
    worker_shapes,
)

# The Kubernetes versions the pod templates must be valid for: the oldest we support and the newest schema shipped.
K8S_VERSIONS = ("1.30", "latest")
# Environment variables the Serve app reads for its secrets, and where they must come from.
SECRET_ENV = ("RAYDQ_DATABASE_URL", "RAYDQ_API_TOKEN")
OBJECT_STORE_SCHEMES = ("s3://", "gs://", "abfs://", "abfss://")
SECRET_LIKE = re.compile(r"TOKEN|PASSWORD|SECRET|DATABASE_URL|ACCESS_KEY", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------------------
# The checks


def check_parses(project: Project) -> None:
    """Every k8s/*.yaml parses, and each document names its apiVersion, kind and metadata.name."""
    problems = []
    if not project.manifest_texts:
        problems.append("k8s/: no *.yaml manifests")
    for name, text in project.manifest_texts.items():
        try:
            docs = _load_all(name, text)
        except ManifestError as e:
            problems.append(str(e))
            continue
        if not docs:
            problems.append(f"k8s/{name}: no documents")
        for i, doc in enumerate(docs):
            missing = [k for k in ("apiVersion", "kind") if not doc.get(k)]
            if not (doc.get("metadata") or {}).get("name"):
                missing.append("metadata.name")
            if missing:
                problems.append(f"k8s/{name}: document {i} lacks {', '.join(missing)}")
    kinds = {doc.get("kind") for docs in project.docs.values() for doc in docs}
    problems += [f"k8s/: no {kind} manifest" for kind in RAY_KINDS if kind not in kinds]
    _raise(problems)


def check_crd_schema(project: Project) -> None:
    """Each Ray custom resource matches k8s/schema/kuberay-v1.schema.json (unknown fields are errors)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(project.schema)
    problems = []
    for name, doc in project.resources():
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            problems.append(f"k8s/{name}: {doc['kind']} {_where(error.absolute_path)}: {error.message}")
    _raise(problems)


def check_pod_templates(project: Project) -> None:
    """Each embedded pod template is a valid PodTemplateSpec for Kubernetes (strict: no unknown fields)."""
    import kubernetes_validate

    versions = [kubernetes_validate.latest_version() if v == "latest" else v for v in K8S_VERSIONS]
    problems = []
    for name, doc in project.resources():
        for where, template in pod_templates(doc):
            wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
            for version in versions:
                try:
                    kubernetes_validate.validate(wrapped, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    inner = _where(list(e.path)[1:])  # drop the wrapper's "template"
                    problems.append(f"k8s/{name}: {where}.{inner}: {e.message} (Kubernetes {e.version})")
                    break
    _raise(problems)


def serve_config_v2(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    text = (doc.get("spec") or {}).get("serveConfigV2")
    if not isinstance(text, str):
        raise ManifestError(f"k8s/{name}: spec.serveConfigV2 must be a YAML string")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ManifestError(f"k8s/{name}: spec.serveConfigV2 is not valid YAML: {e}") from e
    if not isinstance(parsed, dict):
        raise ManifestError(f"k8s/{name}: spec.serveConfigV2 is not a mapping")
    return parsed


def check_serve_schema(project: Project) -> None:
    """serveConfigV2 is a valid Serve config for Ray's own ServeDeploySchema."""
    from ray.serve.schema import ServeDeploySchema

    problems = []
    for name, doc in project.resources("RayService"):
        try:
            config = serve_config_v2(name, doc)
            ServeDeploySchema.model_validate(config)
        except ManifestError as e:
            problems.append(str(e))
            continue
        except ValueError as e:  # pydantic.ValidationError
            problems.append(f"k8s/{name}: spec.serveConfigV2 rejected by ServeDeploySchema: {e}")
            continue
        port = (config.get("http_options") or {}).get("port", KUBERAY_SERVE_PORT)
        if port != KUBERAY_SERVE_PORT:
            problems.append(
                f"k8s/{name}: serveConfigV2 http_options.port {port}: "
                f"KubeRay's serve Service targets {KUBERAY_SERVE_PORT}"
            )
        for i, app in enumerate(config["applications"]):
            args_model = APP_ARGS.get(app.get("import_path"))
            if args_model is None:
                continue
            try:
                _import(args_model).model_validate(app.get("args") or {})
            except ValueError as e:
                problems.append(f"k8s/{name}: serveConfigV2 applications[{i}].args rejected by {args_model}: {e}")
    _raise(problems)


KUBERAY_SERVE_PORT = 8000  # the port of the <rayservice>-serve-svc Service KubeRay creates

# The typed args model of each app builder: Serve validates `args` with it when the app is deployed.
APP_ARGS = {"raydq.serve.app:build_app": "raydq.serve.config:ServeArgs"}


def _import(path: str) -> Any:
    """The object at `module:attr`; only for light modules (the args models import pydantic, not torch or Ray)."""
    import importlib

    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def check_serve_matches_config(project: Project) -> None:
    """serveConfigV2 deploys the applications of serve_configs/cluster.yaml, compared as parsed structures."""
    if project.serve_config is None:
        raise ManifestError("serve_configs/cluster.yaml is missing: serveConfigV2 has nothing to match")
    expected = project.serve_config
    problems = []
    for name, doc in project.resources("RayService"):
        got = serve_config_v2(name, doc)
        if not got.get("applications"):
            problems.append(f"k8s/{name}: spec.serveConfigV2 deploys no applications")
        if got != expected:
            problems.append(
                f"k8s/{name}: spec.serveConfigV2 differs from serve_configs/cluster.yaml at "
                f"{_first_difference(got, expected, 'serveConfigV2')}"
            )
    _raise(problems)


def _first_difference(a: Any, b: Any, path: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key, _MISSING) != b.get(key, _MISSING):
                return _first_difference(a.get(key, _MISSING), b.get(key, _MISSING), f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path} ({_short(a)} != {_short(b)})"


_MISSING = "<missing>"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_versions(project: Project) -> None:
    """rayVersion of every cluster = the Ray version of the Dockerfile's base image = the `ray` pin in pyproject."""
    problems = []
    image = dockerfile_from(project.dockerfile)
    m = RAY_IMAGE.match(image)
    if not m:
        raise ManifestError(f"Dockerfile: FROM {image} is not Ray's image rayproject/ray:<version>[-variant]")
    image_version = m["version"]
    pins = [Requirement(r) for r in project.pyproject["project"]["dependencies"]]
    ray_pins = [r for r in pins if r.name == "ray"]
    if len(ray_pins) != 1:
        raise ManifestError(f"pyproject.toml: expected one `ray` dependency, found {len(ray_pins)}")
    pin = ray_pins[0].specifier
    if Version(image_version) not in pin:
        problems.append(f"Dockerfile: base image Ray {image_version} does not satisfy pyproject.toml ray{pin}")
    python_tag = re.search(r"py(\d)(\d+)", m["variant"] or "")
    requires = SpecifierSet(project.pyproject["project"].get("requires-python", ""))
    if python_tag and Version(f"{python_tag[1]}.{python_tag[2]}") not in requires:
        problems.append(f"Dockerfile: base image Python {python_tag[0]} outside requires-python {requires}")
    for name, doc in project.resources():
        where, spec = cluster_spec(doc)
        version = spec.get("rayVersion")
        if version != image_version:
            problems.append(f"k8s/{name}: {where}.rayVersion {version!r} != Dockerfile's Ray {image_version}")
        elif Version(version) not in pin:
            problems.append(f"k8s/{name}: {where}.rayVersion {version} does not satisfy pyproject.toml ray{pin}")
    _raise(problems)


def check_dockerfile(project: Project) -> None:
    """The image installs raydq with pip and carries the job scripts and Serve configs the manifests use."""
    problems = []
    runs = [line for line in instructions(project.dockerfile) if line.upper().startswith("RUN ")]
    install = re.compile(
        r"pip3?\s+install\b[^&;|]*?(?:\s|[\"'])(?:\.|\.\[[\w,]+\]|\.\$\{?\w+\}?|raydq\S*)(?=[\"'\s]|$)"
    )
    if not any(install.search(line) for line in runs):
        problems.append("Dockerfile: no `RUN pip install .` (or `pip install raydq`) step installs raydq")
    copied = copied_sources(project.dockerfile)
    for needed in ("pyproject.toml", "raydq", "jobs", "serve_configs"):
        if needed not in copied and "." not in copied:
            problems.append(f"Dockerfile: {needed} is not copied into the image")
    if not dockerfile_workdir(project.dockerfile):
        problems.append("Dockerfile: no WORKDIR, so the image's path of jobs/embed.py is undefined")
    for source in sorted(copied - {"."}):
        # the copied path itself and, for a folder, each Python package inside it (raydq/data is code, not data)
        paths = [source]
        if (project.root / source).is_dir():
            paths += sorted(
                str(init.parent.relative_to(project.root)) for init in (project.root / source).rglob("__init__.py")
            )
        for path in paths:
            pattern = ignored_by(project.dockerignore, path)
            if pattern:
                problems.append(
                    f".dockerignore: {pattern!r} keeps {path}, which the Dockerfile copies, out of the image"
                )
    _raise(problems)


def module_defines(root: Path, import_path: str) -> str | None:
    """None if `module:attr` (or `module.attr`) names a top-level definition in a repository file, else why not.

    Reads the source with `ast` instead of importing it, so the check needs no torch, no Ray and no GPU."""
    module, sep, attr = import_path.partition(":")
    if not sep:
        module, _, attr = import_path.rpartition(".")
    base = root.joinpath(*module.split("."))
    path = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
    if path is None:
        return f"module {module} has no file {base.relative_to(root)}.py in the repository"
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    if attr not in names:
        return f"{path.relative_to(root)} defines no top-level {attr!r}"
    return None


@dataclass
class Command:
    """A `python SCRIPT ARGS...` command line, split."""

    script: str
    flags: list[str]
    values: dict[str, str]


def parse_python_command(command: str) -> Command:
    tokens = shlex.split(command)
    if "--" in tokens:  # `ray job submit ... -- python ...`
        tokens = tokens[tokens.index("--") + 1 :]
    if not tokens or not re.fullmatch(r"python3?(\.\d+)?", Path(tokens[0]).name) or len(tokens) < 2:
        raise ManifestError(f"entrypoint {command!r} is not `python SCRIPT ...`")
    flags, values = [], {}
    args = tokens[2:]
    for i, token in enumerate(args):
        if token.startswith("--"):
            flag, eq, value = token.partition("=")
            flags.append(flag)
            if eq:
                values[flag] = value
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                values[flag] = args[i + 1]
    return Command(script=tokens[1], flags=flags, values=values)


def script_in_repo(project: Project, script: str) -> Path:
    """The repository file that `script` runs: a relative path, or an absolute one under the image's WORKDIR."""
    workdir = dockerfile_workdir(project.dockerfile)
    if script.startswith("/"):
        if not workdir or not script.startswith(workdir.rstrip("/") + "/"):
            raise ManifestError(f"{script} is outside the image's WORKDIR {workdir} where the repository is copied")
        script = script[len(workdir.rstrip("/")) + 1 :]
    return project.root / script


def script_flags(root: Path, path: Path) -> set[str]:
    """The `--flags` a script declares, read with `ast` (the script imports torch; importing it here would be slow).

    Literal flags (`add_argument("--x")`), plus `--field-name` for each field of a pydantic model of the repository
    that the script imports and turns into flags through `model_fields` (as jobs/embed.py does with EmbedConfig)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    flags = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"--[\w-]+", node.value)
    }
    if not any(isinstance(n, ast.Attribute) and n.attr == "model_fields" for n in ast.walk(tree)):
        return flags
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                fields = _model_fields(root, node.module, alias.name)
                flags.update("--" + f.replace("_", "-") for f in fields)
    return flags


def _model_fields(root: Path, module: str, name: str) -> list[str]:
    """Annotated fields of class `name` in the repository module `module` (empty if it is not a pydantic model)."""
    base = root.joinpath(*module.split("."))
    path = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
    if path is None:
        return []
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.ImportFrom) and node.module and any((a.asname or a.name) == name for a in node.names):
            original = next(a.name for a in node.names if (a.asname or a.name) == name)
            return _model_fields(root, node.module, original) if node.level == 0 else []
        if isinstance(node, ast.ClassDef) and node.name == name:
            if not any(isinstance(b, ast.Name) and b.id == "BaseModel" for b in node.bases):
                return []
            return [
                n.target.id
                for n in node.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and not n.target.id.startswith("_")
            ]
    return []


def check_repo_references(project: Project) -> None:
    """Every Serve import_path and job entrypoint names code that exists in the repository."""
    problems = []
    for name, doc in project.resources("RayService"):
        try:
            apps = serve_config_v2(name, doc).get("applications") or []
        except ManifestError as e:
            problems.append(str(e))
            continue
        for i, app in enumerate(apps):
            why = module_defines(project.root, str(app.get("import_path", "")))
            if why:
                problems.append(f"k8s/{name}: serveConfigV2 applications[{i}].import_path: {why}")
    for name, doc in project.resources("RayJob"):
        try:
            problems += [f"k8s/{name}: spec.entrypoint: {p}" for p in _entrypoint_problems(project, doc["spec"])]
        except ManifestError as e:
            problems.append(f"k8s/{name}: spec.entrypoint: {e}")
    _raise(problems)


def _entrypoint_problems(project: Project, spec: dict[str, Any]) -> list[str]:
    command = parse_python_command(str(spec.get("entrypoint", "")))
    path = script_in_repo(project, command.script)
    if not path.is_file():
        return [f"script {command.script} is not in the repository ({path.relative_to(project.root)} missing)"]
    known = script_flags(project.root, path)
    return [f"{path.relative_to(project.root)} has no option {flag}" for flag in command.flags if flag not in known]


def _quantity(value: Any) -> str:
    return str(value).strip()


def check_gpu_resources(project: Project) -> None:
    """GPUs (and any extended resource) have requests == limits; the head asks for none, a worker group for some."""
    problems = []
    for name, doc in project.resources():
        where, _ = cluster_spec(doc)
        gpu_groups = 0
        for tpl_where, template in pod_templates(doc):
            for c in containers(template):
                res = c.get("resources") or {}
                requests, limits = res.get("requests") or {}, res.get("limits") or {}
                for key in sorted(set(requests) | set(limits)):
                    if "/" not in key:  # cpu, memory, ephemeral-storage may be overcommitted
                        continue
                    if _quantity(requests.get(key)) != _quantity(limits.get(key)):
                        problems.append(
                            f"k8s/{name}: {tpl_where} container {c.get('name')}: {key} requests "
                            f"{requests.get(key)!r} != limits {limits.get(key)!r}"
                        )
                if "nvidia.com/gpu" in limits:
                    if "headGroupSpec" in tpl_where:
                        problems.append(f"k8s/{name}: {tpl_where}: the head must be a CPU node, not ask for GPUs")
                    elif "workerGroupSpecs" in tpl_where:
                        gpu_groups += 1
        if not gpu_groups:
            problems.append(f"k8s/{name}: {where}: no worker group asks for nvidia.com/gpu")
    _raise(problems)


def check_fits(project: Project) -> None:
    """Every Serve replica and embedding actor fits in one pod of some worker group (the head runs no tasks)."""
    problems = []
    for name, doc in project.resources():
        shapes = worker_shapes(doc)
        demands: list[tuple[str, float, float]] = []
        if doc["kind"] == "RayService":
            try:
                apps = serve_config_v2(name, doc).get("applications") or []
            except ManifestError:
                apps = []
            for app in apps:
                args = app.get("args") or {}
                for key, value in args.items():
                    if key.endswith("_num_cpus") and isinstance(value, int | float):
                        demands.append((f"args.{key}", float(value), 0.0))
                for d in app.get("deployments") or []:
                    opts = d.get("ray_actor_options") or {}
                    demands.append((f"deployment {d.get('name')}", opts.get("num_cpus", 0), opts.get("num_gpus", 0)))
        if doc["kind"] == "RayJob":
            try:
                values = parse_python_command(str(doc["spec"].get("entrypoint", ""))).values
                demands.append(
                    (
                        "embedding actor",
                        float(values.get("--cpus-per-actor", 1)),
                        float(values.get("--num-gpus-per-actor", 0)),
                    )
                )
            except (ManifestError, ValueError) as e:
                problems.append(f"k8s/{name}: spec.entrypoint: {e}")
        for what, cpus, gpus in demands:
            if not any(cpus <= c and gpus <= g for _, c, g in shapes):
                offered = ", ".join(f"{g}: {c:g} CPU {n:g} GPU" for g, c, n in shapes)
                problems.append(f"k8s/{name}: {what} needs {cpus:g} CPU {gpus:g} GPU; no worker pod has it ({offered})")
    _raise(problems)


def check_replica_bounds(project: Project) -> None:
    """0 <= minReplicas <= replicas <= maxReplicas in every worker group."""
    problems = []
    for name, doc in project.resources():
        where, spec = cluster_spec(doc)
        for i, group in enumerate(spec.get("workerGroupSpecs") or []):
            lo, n, hi = (group.get(k) for k in ("minReplicas", "replicas", "maxReplicas"))
            if not all(isinstance(x, int) for x in (lo, n, hi)) or not 0 <= lo <= n <= hi:
                problems.append(
                    f"k8s/{name}: {where}.workerGroupSpecs[{i}]({group.get('groupName')}): need "
                    f"0 <= minReplicas <= replicas <= maxReplicas, got {lo}, {n}, {hi}"
                )
    _raise(problems)


def check_autoscaling(project: Project) -> None:
    """The autoscaler is on and the GPU worker group can grow."""
    problems = []
    for name, doc in project.resources():
        where, spec = cluster_spec(doc)
        if spec.get("enableInTreeAutoscaling") is not True:
            problems.append(f"k8s/{name}: {where}.enableInTreeAutoscaling must be true")
        for i, group in enumerate(spec.get("workerGroupSpecs") or []):
            asks_gpu = any(
                "nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {})
                for c in containers(group.get("template") or {})
            )
            if asks_gpu and not (group.get("maxReplicas", 0) > group.get("minReplicas", 0)):
                problems.append(f"k8s/{name}: {where}.workerGroupSpecs[{i}]: GPU group cannot scale (max <= min)")
        if doc["kind"] == "RayJob":
            problems += [f"k8s/{name}: spec.entrypoint: {p}" for p in _embed_pool_problems(doc)]
    _raise(problems)


def _embed_pool_problems(doc: dict[str, Any]) -> list[str]:
    """The embed job's GPU actor pool can grow over every GPU the worker groups can reach (--max-actors); without
    it the pool stays at the GPUs present when the job starts."""
    groups = cluster_spec(doc)[1].get("workerGroupSpecs") or []
    capacity = sum(
        gpus * int(group.get("maxReplicas") or 0)
        for group, (_, _, gpus) in zip(groups, worker_shapes(doc), strict=True)
    )
    try:
        values = parse_python_command(str(doc["spec"].get("entrypoint", ""))).values
        per_actor = float(values.get("--num-gpus-per-actor", 1 if capacity else 0))
        max_actors = int(values["--max-actors"]) if "--max-actors" in values else None
    except (ManifestError, ValueError) as e:
        return [str(e)]
    if per_actor <= 0 or not capacity:
        return []
    if max_actors is None:
        return [
            f"the embed job's GPU pool stays at the GPUs present at start; pass --max-actors "
            f"{int(capacity // per_actor)} to let it grow with the GPU groups ({capacity:g} GPUs at most)"
        ]
    if max_actors * per_actor != capacity:
        return [
            f"--max-actors {max_actors} x --num-gpus-per-actor {per_actor:g} = {max_actors * per_actor:g} GPUs, but "
            f"the GPU worker groups grow to {capacity:g}"
        ]
    return []


def check_shared_cluster_spec(project: Project) -> None:
    """The RayService and RayJob embed exactly the cluster spec of the standalone RayCluster."""
    source = project.one("RayCluster").get("spec")
    problems = []
    for name, doc in project.resources():
        if doc["kind"] == "RayCluster":
            continue
        where, spec = cluster_spec(doc)
        if spec != source:
            diff = _first_difference(spec, source, where)
            problems.append(f"k8s/{name}: {where} drifted from the RayCluster's spec at {diff}")
    _raise(problems)


ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${VAR} without a default: the pod must set VAR


def secret_env(project: Project) -> tuple[list[str], list[str]]:
    """(env vars that must come from Secrets, problems): the database URL and API token variables.

    Read from serve_configs/cluster.yaml when it is there: ServeArgs expands `${VAR}` in database_url inside the
    replicas and reads the token from the variable named by api_token_env (RAYDQ_API_TOKEN by default)."""
    if project.serve_config is None:
        return list(SECRET_ENV), []
    names, problems = [], []
    for i, app in enumerate(project.serve_config.get("applications") or []):
        if app.get("import_path") not in APP_ARGS:
            continue
        args = app.get("args") or {}
        url = str(args.get("database_url", ""))
        refs = ENV_REF.findall(url)
        if not refs:
            problems.append(
                f"serve_configs/cluster.yaml: applications[{i}].args.database_url must be a ${{VAR}} reference "
                "(the PostgreSQL URL comes from a Secret), not an inline value"
            )
        names += refs
        token_env = args.get("api_token_env", "RAYDQ_API_TOKEN")
        if token_env and not args.get("api_token_file"):
            names.append(token_env)
        elif not args.get("api_token_file"):
            problems.append(f"serve_configs/cluster.yaml: applications[{i}].args turns API token auth off")
    return list(dict.fromkeys(names)), problems


def check_secrets(project: Project) -> None:
    """Every Ray container takes the PostgreSQL URL and API token from Secrets; no secret is written inline."""
    required, problems = secret_env(project)
    for name, doc in project.resources():
        for where, template in pod_templates(doc):
            if where == "spec.submitterPodTemplate":
                continue
            for c in (template.get("spec") or {}).get("containers") or []:
                env = {e.get("name"): e for e in c.get("env") or []}
                for var in required:
                    ref = ((env.get(var) or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
                    if not (ref.get("name") and ref.get("key")):
                        problems.append(
                            f"k8s/{name}: {where} container {c.get('name')}: env {var} must come from a Secret "
                            "(valueFrom.secretKeyRef with name and key)"
                        )
                for var, entry in env.items():
                    if "value" in entry and SECRET_LIKE.search(str(var)):
                        problems.append(f"k8s/{name}: {where} container {c.get('name')}: env {var} is inline")
    _raise(problems)


def secret_names(project: Project) -> set[str]:
    """Names of every Secret the manifests read (env, envFrom, authOptions)."""
    names: set[str] = set()
    for _, doc in project.resources():
        names.add(((cluster_spec(doc)[1].get("authOptions") or {}).get("secretName")) or "")
        for _, template in pod_templates(doc):
            for c in containers(template):
                for e in c.get("env") or []:
                    names.add(((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") or "")
                for e in c.get("envFrom") or []:
                    names.add((e.get("secretRef") or {}).get("name") or "")
    return names - {""}


def check_object_storage(project: Project) -> None:
    """The embed job reads images from and writes embeddings to object storage, where the Serve app reads them."""
    problems = []
    for name, doc in project.resources("RayJob"):
        try:
            command = parse_python_command(str(doc["spec"].get("entrypoint", "")))
        except ManifestError as e:
            problems.append(f"k8s/{name}: spec.entrypoint: {e}")
            continue
        output = command.values.get("--output", "")
        if not output.startswith(OBJECT_STORE_SCHEMES):
            problems.append(f"k8s/{name}: spec.entrypoint --output {output!r} is not an object-store URI")
        source = command.values.get("--source", "")
        if source and "://" not in source:
            problems.append(f"k8s/{name}: spec.entrypoint --source {source!r} is a local path, not on object storage")
        for where, uri in serve_embeddings(project):
            if uri.rstrip("/") != output.rstrip("/"):
                problems.append(
                    f"k8s/{name}: the embed job writes {output!r} but the Serve app reads {uri!r} ({where})"
                )
    for where, uri in serve_embeddings(project):
        if not uri.startswith(OBJECT_STORE_SCHEMES):
            problems.append(f"{where}: the Serve app reads embeddings from {uri!r}, not from object storage")
    _raise(problems)


ENV_DEFAULT = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}$")


def serve_embeddings(project: Project) -> list[tuple[str, str]]:
    """(where, URI) the Serve app loads embeddings from on the cluster: a literal, or `${VAR:-default}` resolved
    with the value the Ray pods set for VAR (else the default)."""
    out = []
    for name, doc in project.resources("RayService"):
        try:
            apps = serve_config_v2(name, doc).get("applications") or []
        except ManifestError:
            continue
        pod_env = {
            e.get("name"): e.get("value")
            for _, template in pod_templates(doc)
            for c in containers(template)
            for e in c.get("env") or []
            if "value" in e
        }
        for i, app in enumerate(apps):
            value = (app.get("args") or {}).get("embeddings") if app.get("import_path") in APP_ARGS else None
            if not isinstance(value, str):
                continue
            m = ENV_DEFAULT.match(value)
            if m:
                value = pod_env.get(m[1]) or m[2] or ""
            out.append((f"k8s/{name}: serveConfigV2 applications[{i}].args.embeddings", value))
    return out


def check_readme(project: Project) -> None:
    """k8s/README.md applies every manifest, creates every Secret, and its commands name real services and files."""
    readme = project.readme
    problems = []
    if not readme:
        raise ManifestError("k8s/README.md is missing")
    applied = set(re.findall(r"kubectl apply -f k8s/([\w.-]+\.yaml)", readme))
    problems += [f"k8s/README.md: `kubectl apply -f k8s/{f}` names no file" for f in applied - set(project.docs)]
    problems += [f"k8s/README.md: never applies k8s/{f}" for f in set(project.docs) - applied]
    created = set(re.findall(r"kubectl create secret generic ([\w.-]+)", readme))
    missing = sorted(secret_names(project) - created)
    problems += [f"k8s/README.md: Secret {s} is used but never created" for s in missing]
    services = set()
    for _, doc in project.resources():
        services.add(f"{doc['metadata']['name']}-head-svc")
        if doc["kind"] == "RayService":
            services.add(f"{doc['metadata']['name']}-serve-svc")
    for svc in re.findall(r"kubectl port-forward (?:-n \S+ )?svc/([\w.-]+)", readme):
        if svc not in services:
            problems.append(f"k8s/README.md: port-forward to svc/{svc}, which KubeRay does not create here")
    submits = re.findall(r"^ray job submit .*?$(?:\n(?:  |\t).*$)*", readme.replace("\\\n", " "), re.MULTILINE)
    if not submits:
        problems.append("k8s/README.md: no `ray job submit` command")
    for command in submits:
        try:
            problems += [f"k8s/README.md: {p}" for p in _entrypoint_problems(project, {"entrypoint": command})]
        except ManifestError as e:
            problems.append(f"k8s/README.md: {e}")
    problems += [f"k8s/README.md: {p}" for p in _curl_problems(project)]
    _raise(problems)


API_MODULE = "raydq/serve/api.py"  # the FastAPI routes of the Serve app
API_SCHEMAS = "raydq.serve.schemas"  # their request models


def api_routes(root: Path) -> dict[tuple[str, str], str | None]:
    """{(METHOD, path): request model name or None} from the `@app.<method>("/path")` handlers, read with `ast`."""
    path = root / API_MODULE
    if not path.is_file():
        raise ManifestError(f"{API_MODULE} is missing: the README's curl commands have no routes to match")
    routes: dict[tuple[str, str], str | None] = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for deco in node.decorator_list:
            if (
                isinstance(deco, ast.Call)
                and isinstance(deco.func, ast.Attribute)
                and deco.func.attr in ("get", "post", "put", "patch", "delete")
                and deco.args
                and isinstance(deco.args[0], ast.Constant)
            ):
                params = node.args.args
                model = params[0].annotation if params else None
                routes[(deco.func.attr.upper(), deco.args[0].value)] = model.id if isinstance(model, ast.Name) else None
    return routes


def _curl_problems(project: Project) -> list[str]:
    """Each curl in the README calls a route of the app under its route_prefix, with a body the route accepts."""
    from urllib.parse import urlparse

    text = project.readme.replace("\\\n", " ")
    curls = re.findall(r"^curl .*$", text, re.MULTILINE)
    if not curls:
        return ["no curl command for the Serve app"]
    try:
        routes = api_routes(project.root)
    except ManifestError as e:
        return [str(e)]
    prefix = "/"
    for name, doc in project.resources("RayService"):
        apps = serve_config_v2(name, doc).get("applications") or []
        prefix = next((a.get("route_prefix") or "/" for a in apps if a.get("import_path") in APP_ARGS), prefix)
    problems = []
    for command in curls:
        tokens = shlex.split(command)
        url = next((t for t in tokens if t.startswith(("http://", "https://"))), "")
        method = tokens[tokens.index("-X") + 1] if "-X" in tokens else "GET"
        body = next((tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in ("-d", "--data", "--data-raw")), None)
        path = urlparse(url).path
        if not path.startswith(prefix):
            problems.append(f"curl {url}: not under the app's route_prefix {prefix}")
            continue
        route = "/" + path[len(prefix) :].lstrip("/")
        if (method, route) not in routes:
            problems.append(f"curl -X {method} {url}: the app has no route {method} {route} ({API_MODULE})")
            continue
        model = routes[(method, route)]
        if body is not None and model:
            try:
                _import(f"{API_SCHEMAS}:{model}").model_validate_json(body)
            except ValueError as e:
                problems.append(f"curl {route}: body {body} rejected by {model}: {e}")
    return problems


CHECKS: dict[str, Callable[[Project], None]] = {
    "parses": check_parses,
    "crd_schema": check_crd_schema,
    "pod_templates": check_pod_templates,
    "serve_schema": check_serve_schema,
    "serve_matches_config": check_serve_matches_config,
    "versions": check_versions,
    "cuda_line": check_cuda_line,
    "gpu_packages": check_gpu_packages,
    "images": check_images,
    "dockerfile": check_dockerfile,
    "repo_references": check_repo_references,
    "gpu_resources": check_gpu_resources,
    "replica_bounds": check_replica_bounds,
    "fits": check_fits,
    "autoscaling": check_autoscaling,
    "shared_cluster_spec": check_shared_cluster_spec,
    "secrets": check_secrets,
    "object_storage": check_object_storage,
    "readme": check_readme,
}

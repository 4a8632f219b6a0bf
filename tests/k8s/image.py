"""The image's CUDA line and GPU packages, and which image every pod runs; read from files (no docker, no registry).

The chain that must hold: the torch pin in pyproject.toml -> the CUDA line of its PyPI wheel (`TORCH_CUDA`) -> the
platform tag of Ray's base image in the Dockerfile -> the gpu extra's cupy-cuda<N>x and cuml-cu<N> -> the NVIDIA
driver k8s/README.md asks for. The GPU image is the Dockerfile's default build, tagged `raydq:<version>-<platform>`,
and every pod that offers GPUs runs it.
"""

from __future__ import annotations

import re
from typing import Any

from packaging.requirements import Requirement
from packaging.version import Version

from tests.k8s.dockerfile import RAY_IMAGE, build_args, copied_sources, dockerfile_from, shell_steps
from tests.k8s.project import ManifestError, Project, _raise, cluster_spec, containers

# The CUDA line of torch's default PyPI wheel for Linux x86_64, per minor version (`torch.version.cuda` of that
# wheel; torch 2.14.1 from PyPI is 2.14.1+cu130). tests/test_k8s.py compares the pinned version's entry with the
# torch installed from PyPI into the test environment. Add a line when the pin moves.
TORCH_CUDA = {"2.14": "13.0"}
# Ray's platform tags: cuXYZ is CUDA X.Y (cu130 = 13.0, cu128 = 12.8); `gpu` aliases Ray's default CUDA line,
# cu12.1.1-cudnn8 for Ray 2.60 (ray-images.json in ray-project/ray); cpu and tpu have no CUDA.
RAY_GPU_ALIAS_CUDA = "12.1"
RAY_PLATFORM = re.compile(r"cu\d{3}|gpu|cpu|tpu")
# The oldest NVIDIA driver branch each CUDA major runs on (with CUDA's minor-version compatibility).
MIN_DRIVER = {"12": 525, "13": 580}
# CuPy wheels Ray's images may carry (their ray[all] pins cupy-cuda12x); every cupy-cuda* writes the same cupy/.
RAY_CUPY = ("cupy-cuda12x",)
CHECK_SCRIPT = "k8s/check_image.py"
IMAGE_NAME = "raydq"
# `pip install .`, `.[gpu]` or `.${RAYDQ_EXTRAS}` (after substitution): the step that installs raydq.
RAYDQ_INSTALL = re.compile(r"\bpip3?\s+install\b.*?(?:^|\s|[\"'])\.(?:\[(?P<extras>[\w,\s-]*)\])?(?=[\"'\s]|$)")


def platform_of(image: str) -> str:
    """Ray's platform tag of an image `rayproject/ray:<version>-<python>-<platform>` (no tag: cpu)."""
    m = RAY_IMAGE.match(image)
    if not m:
        raise ManifestError(f"Dockerfile: FROM {image} is not Ray's image rayproject/ray:<version>[-variant]")
    found = [t for t in (m["variant"] or "").split("-") if RAY_PLATFORM.fullmatch(t)]
    return found[-1] if found else "cpu"


def platform_cuda(platform: str) -> str | None:
    """CUDA X.Y of a Ray platform tag, None for cpu/tpu."""
    if platform == "gpu":
        return RAY_GPU_ALIAS_CUDA
    m = re.fullmatch(r"cu(\d+)(\d)", platform)
    return f"{m[1]}.{m[2]}" if m else None


def torch_cuda(pyproject: dict[str, Any]) -> tuple[Version, str]:
    """(pinned torch version, CUDA line of its PyPI wheel)."""
    pins = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    torch = [r for r in pins if r.name == "torch"]
    exact = [s for r in torch for s in r.specifier if s.operator == "=="]
    if len(torch) != 1 or len(exact) != 1:
        raise ManifestError(
            "pyproject.toml: torch must be pinned with one `==` so that the image's CUDA line can follow it, got "
            f"{[str(r) for r in torch]}"
        )
    version = Version(exact[0].version.removesuffix(".*"))
    minor = f"{version.major}.{version.minor}"
    if minor not in TORCH_CUDA:
        raise ManifestError(
            f"pyproject.toml pins torch {version}, but tests/k8s/image.py TORCH_CUDA records no CUDA line for torch "
            f"{minor}: add torch.version.cuda of its PyPI wheel"
        )
    return version, TORCH_CUDA[minor]


def check_cuda_line(project: Project) -> None:
    """The Dockerfile's default base image is Ray's image on the CUDA line of the pinned torch, and the README names
    the NVIDIA driver that line needs."""
    image = dockerfile_from(project.dockerfile)
    platform = platform_of(image)
    cuda = platform_cuda(platform)
    version, wanted = torch_cuda(project.pyproject)
    if cuda is None:
        raise ManifestError(
            f"Dockerfile: the default build FROM {image} has no CUDA ({platform}); the default build is the GPU image"
        )
    problems = []
    if cuda != wanted:
        alias = " (`gpu` is Ray's default CUDA line)" if platform == "gpu" else ""
        problems.append(
            f"Dockerfile: base image {image} is CUDA {cuda}{alias}, but pyproject.toml pins torch {version}, "
            f"whose PyPI wheels are built for CUDA {wanted}: use Ray's cu{wanted.replace('.', '')} variant"
        )
    driver = MIN_DRIVER.get(wanted.split(".")[0])
    if driver and not re.search(rf"\bR{driver}\b", project.readme):
        problems.append(
            f"k8s/README.md: the GPU image (CUDA {wanted}) needs NVIDIA driver R{driver} or newer on the GPU nodes; "
            "the README does not say so"
        )
    _raise(problems)


def _extras(project: Project, name: str) -> list[Requirement]:
    return [Requirement(r) for r in project.pyproject["project"].get("optional-dependencies", {}).get(name, [])]


def _bounded(req: Requirement) -> bool:
    """An upper bound: `<`, `<=`, `~=`, or `==` (exact or `X.Y.*`)."""
    return any(s.operator in ("<", "<=", "~=", "==", "===") for s in req.specifier)


def _index(steps: list[str], pattern: str) -> int | None:
    return next((i for i, step in enumerate(steps) if re.search(pattern, step)), None)


def check_gpu_packages(project: Project) -> None:
    """The default build installs the gpu extra: cuML and exactly one CuPy, both for the torch's CUDA major and with
    an upper bound; Ray's cupy-cuda12x is uninstalled before they arrive; k8s/check_image.py checks the result."""
    _, cuda = torch_cuda(project.pyproject)
    major = cuda.split(".")[0]
    problems = []
    gpu = _extras(project, "gpu")
    cupys = [r for r in gpu if r.name.startswith("cupy")]
    cumls = [r for r in gpu if re.fullmatch(r"cuml(-cu\d+)?", r.name)]
    if len(cupys) != 1 or len(cumls) != 1:
        problems.append(
            f"pyproject.toml: the gpu extra must hold one cupy and one cuml, got {[str(r) for r in cupys + cumls]}"
        )
    for req, wanted in [(r, f"cupy-cuda{major}x") for r in cupys] + [(r, f"cuml-cu{major}") for r in cumls]:
        if req.name != wanted:
            problems.append(f"pyproject.toml: gpu extra {req}: torch's CUDA is {cuda}, so it must be {wanted}")
        if not _bounded(req):
            problems.append(f"pyproject.toml: gpu extra {req} has no upper bound (pin `==X.Y.*` or add `<`)")
    steps = shell_steps(project.dockerfile)
    install = _index(steps, RAYDQ_INSTALL.pattern)
    if install is None:
        _raise([*problems, "Dockerfile: no RUN step installs raydq (`pip install .[extras]`)"])
    extras = set(re.findall(r"[\w-]+", RAYDQ_INSTALL.search(steps[install])["extras"] or ""))
    if "gpu" not in extras:
        problems.append(
            f"Dockerfile: the default build installs raydq with extras {sorted(extras)}, not the gpu extra (cuML, "
            'CuPy): set ARG RAYDQ_EXTRAS="[gpu]"'
        )
    for other in RAY_CUPY:
        if cupys and other == cupys[0].name:
            continue
        uninstall = _index(steps, rf"\bpip3?\s+uninstall\b.*\s{re.escape(other)}\b")
        if uninstall is None:
            problems.append(f"Dockerfile: Ray's {other} is not uninstalled (`pip uninstall -y {other}`): two CuPys")
        elif uninstall > install:
            problems.append(
                f"Dockerfile: `pip uninstall {other}` runs after raydq's install; it must come before, since removing "
                "it afterwards deletes files of the CuPy just installed (both write cupy/)"
            )
    check = _index(steps, rf"\bpython3?\s+{re.escape(CHECK_SCRIPT)}\b")
    if check is None or check < install:
        problems.append(f"Dockerfile: no RUN step runs {CHECK_SCRIPT} after raydq's install")
    elif "gpu" not in re.findall(r"[\w-]+", steps[check].partition("--extras")[2]):
        problems.append(f"Dockerfile: {CHECK_SCRIPT} is not told the gpu extra (--extras), so it skips the GPU checks")
    if CHECK_SCRIPT not in copied_sources(project.dockerfile):
        problems.append(f"Dockerfile: {CHECK_SCRIPT} is not copied into the image")
    if not (project.root / CHECK_SCRIPT).is_file():
        problems.append(f"{CHECK_SCRIPT} is missing from the repository")
    _raise(problems)


def image_tag(project: Project, platform: str) -> str:
    """The tag of the image built for a platform: raydq:<pyproject version>-<platform>."""
    return f"{IMAGE_NAME}:{project.pyproject['project']['version']}-{platform}"


def gpu_image(project: Project) -> str:
    return image_tag(project, platform_of(dockerfile_from(project.dockerfile)))


def _offers_gpus(group: dict[str, Any]) -> bool:
    params = group.get("rayStartParams") or {}
    limits = [((c.get("resources") or {}).get("limits") or {}) for c in containers(group.get("template") or {})]
    return float(params.get("num-gpus", 0) or 0) > 0 or any("nvidia.com/gpu" in lim for lim in limits)


def check_images(project: Project) -> None:
    """Every Ray container runs one image, `raydq:<version>-<platform>` of this checkout; pods that offer GPUs run
    the GPU image (the Dockerfile's default build); the README's `docker build` commands make the tags they name."""
    wanted = gpu_image(project)
    problems, seen = [], {}
    for name, doc in project.resources():
        where, spec = cluster_spec(doc)
        groups = [("headGroupSpec", spec.get("headGroupSpec") or {}, False)] + [
            (f"workerGroupSpecs[{i}]({g.get('groupName')})", g, _offers_gpus(g))
            for i, g in enumerate(spec.get("workerGroupSpecs") or [])
        ]
        for label, group, gpus in groups:
            for c in containers(group.get("template") or {}):
                image = str(c.get("image", ""))
                seen.setdefault(image, f"k8s/{name}: {where}.{label}")
                tag = image.rsplit("/", 1)[-1]
                if gpus and tag != wanted:
                    problems.append(
                        f"k8s/{name}: {where}.{label} offers GPUs but runs {image}, not the GPU image {wanted} "
                        "(the Dockerfile's default build)"
                    )
                elif not re.fullmatch(rf"{IMAGE_NAME}:{re.escape(project.pyproject['project']['version'])}-\w+", tag):
                    problems.append(
                        f"k8s/{name}: {where}.{label} runs {image}; expected {IMAGE_NAME}:"
                        f"{project.pyproject['project']['version']}-<platform> (the version in pyproject.toml)"
                    )
    if len(seen) > 1:
        problems.append(
            "k8s/: the Ray containers run different images: " + "; ".join(f"{i} ({w})" for i, w in seen.items())
        )
    problems += _readme_build_problems(project, wanted)
    _raise(problems)


def _readme_build_problems(project: Project, wanted: str) -> list[str]:
    """Each `docker build ... -t TAG .` in the README tags its image raydq:<version>-<the platform it builds>, a CPU
    build leaves out the gpu extra, and one of them builds the GPU image the manifests run."""
    defaults = build_args(project.dockerfile)
    problems, tags = [], []
    for command in re.findall(r"^docker build .*$", project.readme.replace("\\\n", " "), re.MULTILINE):
        given = dict(re.findall(r"--build-arg[ =](\w+)=(\S*)", command))
        platform = given.get("RAY_PLATFORM", defaults.get("RAY_PLATFORM", ""))
        extras = given.get("RAYDQ_EXTRAS", defaults.get("RAYDQ_EXTRAS", "")).strip("'\"")
        tag = (re.search(r"-t (\S+)", command) or [None, ""])[1]
        tags.append(tag)
        if tag != image_tag(project, platform):
            problems.append(
                f"k8s/README.md: `{command}` builds platform {platform}, so tag it {image_tag(project, platform)}"
            )
        if platform_cuda(platform) is None and "gpu" in extras:
            problems.append(f"k8s/README.md: `{command}` builds a CPU image with the gpu extra (set RAYDQ_EXTRAS=)")
    if wanted not in tags:
        problems.append(f"k8s/README.md: no `docker build -t {wanted} .` builds the image the manifests run")
    return problems

"""Checks a built raydq image from inside; the Dockerfile runs it right after installing raydq, so a bad image fails
its build instead of its first GPU job.

    python k8s/check_image.py --ray-version 2.60.0 --extras "[gpu]"

Every image: Ray is the pinned version and raydq imports. The GPU image (``--extras`` names ``gpu``) also needs:
- cuML importable (it imports without a GPU, so a build machine without one can check it);
- exactly one CuPy distribution: Ray's images bring cupy-cuda12x, and every cupy-cuda* wheel writes the same
  ``cupy/`` folder, so a second one silently mixes the files of two CUDA lines;
- torch built for the CUDA line of the base image (``CUDA_VERSION``, set by the nvidia/cuda images Ray builds on).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Iterable

CUPY = re.compile(r"cupy(-cuda\d+x?|-rocm-[\d-]+)?")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cupy_distributions(names: Iterable[str]) -> list[str]:
    """The CuPy distributions among installed distribution names (cupy, cupy-cuda12x, cupy-cuda13x, ...)."""
    return sorted({_normalise(n) for n in names if CUPY.fullmatch(_normalise(n))})


def cuda_mismatch(torch_cuda: str | None, base_cuda: str | None) -> str | None:
    """Why torch's CUDA line (``torch.version.cuda``, e.g. '13.0') does not fit the base image's (``CUDA_VERSION``,
    e.g. '13.0.0'), or None. Compared to the minor version: the base's libraries and torch's wheels are one line."""
    if not torch_cuda:
        return "torch has no CUDA (a CPU wheel) in the GPU image"
    if base_cuda and base_cuda.split(".")[:2] != torch_cuda.split(".")[:2]:
        return f"torch is built for CUDA {torch_cuda} but the base image is CUDA {base_cuda}"
    return None


def check(ray_version: str, gpu: bool) -> list[str]:
    """Every problem of the running environment as an image of this kind; empty when it is fine."""
    problems = []
    import ray

    if ray.__version__ != ray_version:
        problems.append(f"Ray is {ray.__version__}, not the pinned {ray_version}")
    importlib.import_module("raydq")
    if not gpu:
        return problems
    try:
        importlib.import_module("cuml")
    except ImportError as e:
        problems.append(f"the GPU image cannot import cuml: {e}")
    cupys = cupy_distributions(d.metadata["Name"] for d in importlib.metadata.distributions())
    if len(cupys) != 1:
        problems.append(f"the GPU image must hold exactly one CuPy distribution, found {cupys or 'none'}")
    import torch

    why = cuda_mismatch(torch.version.cuda, os.environ.get("CUDA_VERSION"))
    if why:
        problems.append(why)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-version", required=True, help="the Ray version the image must hold")
    parser.add_argument("--extras", default="", help="the raydq extras installed, e.g. '[gpu]'")
    args = parser.parse_args(argv)
    gpu = "gpu" in re.findall(r"\w+", args.extras)
    problems = check(args.ray_version, gpu)
    for problem in problems:
        print(f"k8s/check_image.py: {problem}", file=sys.stderr)
    if not problems:
        print(f"k8s/check_image.py: {'GPU' if gpu else 'CPU'} image OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

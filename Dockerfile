# syntax=docker/dockerfile:1
# The raydq image: Ray's own image at the Ray version pinned in pyproject.toml, on the CUDA line of the pinned torch,
# plus raydq installed with pip. tests/test_k8s.py checks the base image, the pins and the k8s/ manifests offline.
#   GPU image (default):  docker build -t raydq:0.1.0-cu130 .
#   CPU image:            docker build --build-arg RAY_PLATFORM=cpu --build-arg RAYDQ_EXTRAS= -t raydq:0.1.0-cpu .
# The GPU image needs NVIDIA driver R580 or newer on the nodes (CUDA 13.0); on an older driver torch fails at
# .to("cuda") and cuML at its first call.
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
# cu130 = CUDA 13.0, the line of torch 2.14.1's PyPI wheels (+cu130) and of the gpu extra (cupy-cuda13x, cuml-cu13).
# Not `gpu`: that tag is Ray's default CUDA line, still 12.1 with cuDNN 8 (ray-project/ray#54102).
ARG RAY_PLATFORM=cu130
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${RAY_PLATFORM}

ARG RAY_VERSION
# raydq's extras: cuML k-means and CuPy on the GPU workers by default; empty for the CPU image.
ARG RAYDQ_EXTRAS="[gpu]"

# The job scripts and Serve configs live here; k8s/rayjob-embed.yaml runs /home/ray/raydq/jobs/embed.py.
# Owned by Ray's user `ray` (the base image's USER), so pip can build in it.
USER root
RUN mkdir -p /home/ray/raydq && chown ray:users /home/ray/raydq
USER ray
WORKDIR /home/ray/raydq

# raydq installed from the copied source (not editable). Ray itself is already in the base image at the pinned
# version, so pip keeps it (ray[data,serve]==2.60.* is satisfied) and adds only what raydq needs. jobs/ and
# serve_configs/ come after, so editing them does not re-run the install.
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users raydq ./raydq
COPY --chown=ray:users k8s/check_image.py ./k8s/check_image.py
# Exactly one CuPy. Ray's images install ray[all], which brings cupy-cuda12x; it is removed before cupy-cuda13x
# arrives, because both write the same cupy/ folder and removing one afterwards deletes files of the other (pip
# skips it where the base has none). check_image.py then fails the build unless cuML imports, one CuPy is left and
# torch matches the base image's CUDA.
RUN pip uninstall -y cupy-cuda12x \
    && pip install --no-cache-dir ".${RAYDQ_EXTRAS}" \
    && python k8s/check_image.py --ray-version "${RAY_VERSION}" --extras "${RAYDQ_EXTRAS}"

COPY --chown=ray:users jobs ./jobs
COPY --chown=ray:users serve_configs ./serve_configs

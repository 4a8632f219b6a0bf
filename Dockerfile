# syntax=docker/dockerfile:1
# The raydq image: Ray's own image at the Ray version pinned in pyproject.toml, plus raydq installed with pip.
# tests/test_k8s.py checks that RAY_VERSION equals the pin and the rayVersion of every k8s/ manifest.
#   GPU nodes (default):  docker build -t raydq:0.1.0 .
#   CPU-only image:       docker build --build-arg RAY_IMAGE_VARIANT=py311 -t raydq:0.1.0-cpu .
ARG RAY_VERSION=2.60.0
ARG RAY_IMAGE_VARIANT=py311-gpu
FROM rayproject/ray:${RAY_VERSION}-${RAY_IMAGE_VARIANT}

ARG RAY_VERSION
# Optional extras of raydq, e.g. --build-arg RAYDQ_EXTRAS="[gpu]" for cuML k-means on the GPU workers.
ARG RAYDQ_EXTRAS=""

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
RUN pip install --no-cache-dir ".${RAYDQ_EXTRAS}" \
    && python -c "import ray, raydq; assert ray.__version__ == '${RAY_VERSION}', ray.__version__"

COPY --chown=ray:users jobs ./jobs
COPY --chown=ray:users serve_configs ./serve_configs

"""Settings for a Ray instance that a job starts on its own machine (``make demo``, ``python jobs/embed.py`` without
RAY_ADDRESS). Only defaults: a variable the user has set wins."""

from __future__ import annotations

import os


def quiet_local_ray() -> None:
    """Turn Ray 2.60's token auth off (one machine, nothing to authenticate) and its usage reporting (no internet),
    and show only fatal lines of Ray's C++ core: it logs a spurious error-level line whenever Ray Data starts an
    actor pool (ray-project/ray#53727: actor constructor arguments in the object store), which a user takes for a
    failure. Failures that matter still reach the job as Python exceptions. Call it before ``ray.init()``."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

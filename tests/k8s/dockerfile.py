"""Reading a Dockerfile and a .dockerignore the way Docker does, for the offline checks (no docker here)."""

from __future__ import annotations

import re
import shlex

from tests.k8s.project import ManifestError


def dockerfile_from(dockerfile: str) -> str:
    """The image of the (last) FROM line, with ARG defaults declared before it substituted."""
    args: dict[str, str] = {}
    image = None
    for line in instructions(dockerfile):
        word, _, rest = line.partition(" ")
        if word.upper() == "ARG" and image is None:
            key, _, default = rest.strip().partition("=")
            args[key] = default.strip().strip('"')
        elif word.upper() == "FROM":
            tokens = [t for t in rest.split() if not t.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), tokens[0])
    if image is None:
        raise ManifestError("Dockerfile: no FROM line")
    return image


def instructions(text: str) -> list[str]:
    """Instructions with line continuations joined and comments dropped."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


RAY_IMAGE = re.compile(r"^(?:docker\.io/)?rayproject/ray(?:-ml)?:(?P<version>\d+\.\d+\.\d+)(?:-(?P<variant>[\w.-]+))?$")


def dockerfile_workdir(dockerfile: str) -> str | None:
    workdir = None
    for line in instructions(dockerfile):
        word, _, rest = line.partition(" ")
        if word.upper() == "WORKDIR":
            workdir = rest.strip()
    return workdir


def copied_sources(dockerfile: str) -> set[str]:
    sources: set[str] = set()
    for line in instructions(dockerfile):
        word, _, rest = line.partition(" ")
        if word.upper() in ("COPY", "ADD"):
            tokens = [t for t in shlex.split(rest) if not t.startswith("--")]
            sources.update(t.rstrip("/") for t in tokens[:-1])
    return sources


def ignored_by(dockerignore: str, path: str) -> str | None:
    """The last .dockerignore pattern that decides `path` (or a parent folder of it) is excluded, if any."""
    from fnmatch import fnmatch

    decision = None
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in dockerignore.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        if pattern.startswith("**/"):  # at any depth: match the tail of each prefix
            candidates = ["/".join(prefix.split("/")[i:]) for prefix in prefixes for i in range(prefix.count("/") + 1)]
            pattern = pattern[3:]
        else:  # anchored at the build context's root, as Docker reads .dockerignore
            candidates = prefixes
        if any(fnmatch(c, pattern) for c in candidates):
            decision = None if negate else line
    return decision


_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def build_args(dockerfile: str) -> dict[str, str]:
    """The default of every ARG (before and after FROM). A stage's `ARG X` without a default inherits the global
    default, as Docker does, so it keeps the value declared earlier."""
    args: dict[str, str] = {}
    for line in instructions(dockerfile):
        word, _, rest = line.partition(" ")
        if word.upper() == "ARG":
            key, eq, default = rest.strip().partition("=")
            if eq or key not in args:
                args[key] = default.strip().strip('"').strip("'")
    return args


def substitute(text: str, args: dict[str, str]) -> str:
    """`${X}` and `$X` replaced by the ARG defaults; unknown variables stay as written."""
    return _VAR.sub(lambda m: args.get(m[1] or m[2], m[0]), text)


def shell_steps(dockerfile: str) -> list[str]:
    """The shell commands of every RUN, in build order, split at `&&` and `;`, with ARG defaults substituted."""
    args = build_args(dockerfile)
    steps = []
    for line in instructions(dockerfile):
        word, _, rest = line.partition(" ")
        if word.upper() == "RUN":
            steps += [s.strip() for s in re.split(r"&&|;", substitute(rest, args)) if s.strip()]
    return steps

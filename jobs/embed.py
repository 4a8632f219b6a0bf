"""Embed images into an embedding store: ``python jobs/embed.py [flags]``.

Runs the same on a laptop (starts a Ray of its own) and in a cluster (``ray job submit -- python jobs/embed.py ...``,
or a RayJob: ``ray.init()`` joins the cluster named by RAY_ADDRESS; ``RAY_ADDRESS=auto`` joins a ``ray start`` cluster
on this machine). Every flag also reads ``RAYDQ_EMBED_<FLAG>``
from the environment; flags win. With no arguments: 5000 Fashion-MNIST training images, EfficientNet-Lite0,
into data/embeddings/fashion-mnist-train.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing


def _flag_choices(annotation: typing.Any) -> list[str] | None:
    """A Literal field's values, for argparse's --help and its error message; None for any other field."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return list(typing.get_args(args[0])) if typing.get_origin(args[0]) is typing.Literal else None


def build_parser() -> argparse.ArgumentParser:
    from raydq.embed.config import ENV_PREFIX, EmbedConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, field in EmbedConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = ENV_PREFIX + name.upper()
        default = field.default if field.default is not None else "auto"
        help_text = f"{field.description} [env {env}; default {default}]"
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        # Values stay strings, as the environment's do: EmbedConfig converts and validates both the same way (so
        # `--limit all` works as `RAYDQ_EMBED_LIMIT=all` does, and a bad number is reported with its field's name).
        choices = _flag_choices(field.annotation)
        parser.add_argument(flag, dest=name, type=str, choices=choices, default=None, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from raydq.embed import EmbedConfig, run_embed

    args = build_parser().parse_args(argv)
    try:
        config = EmbedConfig.from_env(vars(args))
    except ValidationError as e:
        print(f"jobs/embed.py: invalid settings:\n{e}", file=sys.stderr)
        return 2
    import ray

    from raydq.local_ray import quiet_local_ray

    if os.environ.get("RAY_ADDRESS"):  # ray job submit, a RayJob (or RAY_ADDRESS=auto): join that cluster
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init()
    else:  # a Ray of its own, even when other Ray instances run on this machine (plain ray.init() would join one)
        quiet_local_ray()
        ray.init(address="local")
    summary = run_embed(config)
    return 0 if summary.images or summary.skipped or not summary.failures else 1


if __name__ == "__main__":
    sys.exit(main())

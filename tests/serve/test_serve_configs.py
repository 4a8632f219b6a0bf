"""serve_configs/*.yaml: valid for `serve run` / `serve deploy` (Ray's own ServeDeploySchema) and for ServeArgs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from raydq.serve.config import ServeArgs, expand_env

CONFIGS = sorted((Path(__file__).parents[2] / "serve_configs").glob("*.yaml"))


def test_both_configs_exist():
    assert {p.name for p in CONFIGS} >= {"local.yaml", "cluster.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_a_valid_serve_deploy_config(path):
    doc = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(doc)
    (app,) = schema.applications
    assert app.import_path == "raydq.serve.app:build_app" and app.route_prefix == "/"
    args = ServeArgs.model_validate(app.args)
    assert args.api_token_env == "RAYDQ_API_TOKEN"
    for deployment in app.deployments:
        assert deployment.name in {"Api", "Selector", "HeadTrainer"}


def test_local_config_is_the_embedded_default(tmp_path):
    doc = yaml.safe_load((Path(__file__).parents[2] / "serve_configs/local.yaml").read_text())
    assert doc["http_options"]["host"] == "127.0.0.1"
    args = ServeArgs.model_validate(doc["applications"][0]["args"]).absolutized(tmp_path)
    assert args.embeddings == str(tmp_path / "data/embeddings/fashion-mnist-train")
    assert args.database_url == f"sqlite:///{tmp_path / 'data/labels.db'}"


def test_cluster_config_takes_secrets_from_the_environment(monkeypatch):
    doc = yaml.safe_load((Path(__file__).parents[2] / "serve_configs/cluster.yaml").read_text())
    args = ServeArgs.model_validate(doc["applications"][0]["args"])
    assert "RAYDQ_DATABASE_URL" in args.database_url and "password" not in str(doc["applications"][0]["args"])
    monkeypatch.delenv("RAYDQ_DATABASE_URL", raising=False)
    monkeypatch.delenv("RAYDQ_EMBEDDINGS", raising=False)
    with pytest.raises(ValueError, match="database_url: environment variable RAYDQ_DATABASE_URL is not set"):
        args.resolved_database_url()
    assert args.resolved_embeddings().startswith("s3://")
    monkeypatch.setenv("RAYDQ_DATABASE_URL", "postgresql://u:p@db:5432/raydq")
    monkeypatch.setenv("RAYDQ_EMBEDDINGS", "gs://bucket/emb/")
    monkeypatch.setenv("RAYDQ_API_TOKEN", "t0ken")
    assert args.resolved_database_url() == "postgresql://u:p@db:5432/raydq"
    assert args.resolved_embeddings() == "gs://bucket/emb/"
    assert args.api_token() == "t0ken"
    assert args.absolutized() == args  # URIs and ${...} stay as written


def test_env_expansion_and_token_file(tmp_path, monkeypatch):
    monkeypatch.setenv("A_VAR", "x")
    assert expand_env("${A_VAR}/y:${MISSING_VAR:-d}", field="f") == "x/y:d"
    token = tmp_path / "token"
    token.write_text("  from-file \n")
    monkeypatch.setenv("RAYDQ_API_TOKEN", "from-env")
    args = ServeArgs(embeddings="e", api_token_file=str(token))
    assert args.api_token() == "from-file"
    assert ServeArgs(embeddings="e", api_token_env=None).api_token() is None
    token.write_text("\n")
    with pytest.raises(ValueError, match="api_token_file"):
        args.api_token()


def test_serve_args_refuse_nonsense():
    with pytest.raises(ValueError, match="classes"):
        ServeArgs(embeddings="e", classes=["a", "a"])
    with pytest.raises(ValueError, match="lease_seconds"):
        ServeArgs(embeddings="e", lease_seconds=10, max_lease_seconds=5)
    with pytest.raises(ValueError, match="databse_url"):
        ServeArgs.model_validate({"embeddings": "e", "databse_url": "x"})
    for head_params, says in (({"standardize": "layer"}, "standardize"), ({"lr": -1}, "lr"), ({"depth": 2}, "depth"),
                              ({"random_state": 3}, "random_state"), ({"class_weight": "inverse"}, "class_weight")):
        with pytest.raises(ValueError, match=says):
            ServeArgs(embeddings="e", head_params=head_params)
    paper = ServeArgs(embeddings="e", head_params={"standardize": "batch", "lr": 0.01, "class_weight": None})
    assert paper.head_params["standardize"] == "batch"

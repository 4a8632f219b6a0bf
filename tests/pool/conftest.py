"""Fixtures of the pool tests: a three-node Ray cluster on this machine, and synthetic stores."""

from __future__ import annotations

import os

import pytest

NODES = 3


@pytest.fixture(scope="module")
def three_nodes():
    """``ray.cluster_utils.Cluster`` with three nodes of 2 logical CPUs each. A session's single-node Ray (the
    ``ray_cluster`` fixture) is shut down for the module and started again afterwards, with the same settings."""
    import ray
    from ray.cluster_utils import Cluster

    had_local = ray.is_initialized()
    if had_local:
        ray.shutdown()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": False, "resources": {"node0": 1}},
    )
    try:
        for k in range(1, NODES):
            cluster.add_node(num_cpus=2, resources={f"node{k}": 1})
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if had_local:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


S3_BUCKET = "raydq-test"


@pytest.fixture(scope="module")
def s3_server():
    """A local S3-compatible server (moto's server mode on 127.0.0.1, a free port) with one bucket. The process
    environment points AWS clients at it (what the embed job's writer uses); ``storage_options`` says the same
    explicitly, for shard actors whose workers were started before the environment was set."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
        try:
            yield {
                "bucket": S3_BUCKET,
                "endpoint": endpoint,
                "storage_options": {
                    "endpoint_override": endpoint,
                    "access_key": "testing",
                    "secret_key": "testing",
                    "region": "us-east-1",
                },
            }
        finally:
            server.stop()

"""Fixtures of the pool tests: a local S3-compatible server (the three-node cluster is in tests/conftest.py)."""

from __future__ import annotations

import pytest

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

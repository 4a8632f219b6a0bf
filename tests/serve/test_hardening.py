"""A hostile or careless client: every request that used to get a 500 or unbounded work gets a 4xx naming the field.

These run in one process (TestClient over the same app Serve hosts). Each case was found by probing the service
from outside; each failed on the first version and must keep passing.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from raydq.client import Capabilities, capabilities_of
from raydq.serve.inprocess import create_inprocess_app
from tests.serve.cases import state_of
from tests.serve.helpers import CLASSES

JSON = {"content-type": "application/json"}


@pytest.fixture
def client(make_args, db_url):
    """The in-process app on SQLite and PostgreSQL (PostgreSQL refuses NUL characters SQLite would store)."""
    args = make_args(db_url, max_batch_size=64)
    with TestClient(create_inprocess_app(args), raise_server_exceptions=False) as c:
        c.args = args
        yield c


def _post(c, path: str, raw: bytes):
    return c.post(path, content=raw, headers=JSON)


def _assert_refused(r, status: int, *needles: str) -> None:
    assert r.status_code == status, f"{r.status_code} {r.text[:300]}"
    body = r.json()  # always JSON, always encodable
    assert isinstance(body["detail"], list) and body["detail"], body
    text = json.dumps(body).lower()
    for needle in needles:
        assert needle.lower() in text, f"{needle!r} not in {text[:300]}"


NON_FINITE = [
    ("/select_batch", b'{"batch_size": NaN}', "batch_size"),
    ("/select_batch", b'{"batch_size": Infinity}', "batch_size"),
    ("/select_batch", b'{"batch_size": 2, "lease_seconds": NaN}', "lease_seconds"),
    ("/select_batch", b'{"batch_size": 2, "lease_seconds": -Infinity}', "lease_seconds"),
    ("/select_batch", b'{"batch_size": 1, "lease_seconds": 5e-324}', "lease_seconds"),  # over before it is stored
    ("/renew_batch", b'{"batch_id": "b", "lease_seconds": 0.5}', "lease_seconds"),
    ("/select_batch", b'{"batch_size": 2, "strategy": "random", "options": {"x": NaN}}', "options"),
    ("/renew_batch", b'{"batch_id": "b", "lease_seconds": Infinity}', "lease_seconds"),
]


@pytest.mark.parametrize(("path", "raw", "field"), NON_FINITE)
def test_nan_and_infinity_are_422_naming_the_field(client, path, raw, field):
    _assert_refused(_post(client, path, raw), 422, field)


SURROGATE = "\\ud800"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (f'{{"labels": [{{"id": "img-00001", "label": "circle", "annotator": "{SURROGATE}"}}]}}', "annotator"),
        (f'{{"labels": [{{"id": "{SURROGATE}", "label": "circle"}}]}}', "id"),
        (f'{{"labels": [{{"id": "img-00001", "label": "{SURROGATE}"}}]}}', "label"),
        (f'{{"labels": [{{"id": "img-00001", "label": "circle"}}], "batch_id": "{SURROGATE}"}}', "batch_id"),
        ('{"labels": [{"id": "img-00001", "label": "circle", "annotator": "a\\u0000b"}]}', "annotator"),
        ('{"labels": [{"id": "img\\u0000", "label": "circle"}]}', "id"),
        ('{"labels": [{"id": "img-00001", "skip": true, "reason": "x\\u0000"}]}', "reason"),
    ],
)
def test_broken_unicode_and_nul_are_422_and_store_nothing(client, raw, field):
    from raydq.labels import LabelStore

    store = LabelStore(client.args.database_url)
    try:
        before = state_of(store)
        _assert_refused(_post(client, "/update_labels", raw.encode()), 422, field)
        assert state_of(store) == before
    finally:
        store.close()


def test_surrogate_in_select_fields_is_422(client):
    _assert_refused(_post(client, "/select_batch", f'{{"batch_size": 2, "strategy": "{SURROGATE}"}}'.encode()), 422,
                    "strategy")  # fmt: skip
    _assert_refused(_post(client, "/release_batch", f'{{"batch_id": "{SURROGATE}"}}'.encode()), 422, "batch_id")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"batch_size": "\xff"}', 422),  # not UTF-8
        (b"\xff\xfe", 422),
        (b'{"batch_size": ', 422),
        (b"", 422),
        (b"batch_size=2", 422),
    ],
)
def test_unparseable_bodies_get_the_documented_shape(client, raw, status):
    r = _post(client, "/select_batch", raw)
    _assert_refused(r, status, "body")


def test_wrong_option_types_and_unknown_options_name_the_option(client):
    # asked for dropquery before any label: the cold start runs, but the options are checked against dropquery
    body = b'{"batch_size": 2, "strategy": "dropquery", "options": {"max_candidates": "x"}}'
    r = _post(client, "/select_batch", body)
    _assert_refused(r, 422, "max_candidates")
    r = _post(client, "/select_batch", b'{"batch_size": 2, "strategy": "dropquery", "options": {"n_init": 3}}')
    _assert_refused(r, 422, "n_init")


UNBOUNDED = [
    ("centroid", {"n_init": 1_000_000}, "n_init"),
    ("bald", {"n_passes": 1_000_000}, "n_passes"),
    ("probcover", {"delta": 2.0, "max_edges": 1e300}, "max_edges"),
    ("dropquery", {"chunk_rows": 10**12}, "chunk_rows"),
    ("typiclust", {"max_cluster_rows": 10**9}, "max_cluster_rows"),
    ("dropquery", {"kmeans_niter": 10**7}, "kmeans_niter"),
    ("dropquery", {"max_candidates": 10**12}, "max_candidates"),
]


@pytest.mark.parametrize(("strategy", "options", "field"), UNBOUNDED)
def test_options_past_their_bound_are_refused_before_any_work(client, strategy, options, field):
    body = {"batch_size": 2, "strategy": strategy, "options": options}
    _assert_refused(client.post("/select_batch", json=body), 422, field)


def test_every_option_bound_is_published(client):
    strategies = client.get("/strategies").json()
    assert {"dropquery", "centroid", "bald", "probcover", "typiclust"} <= set(strategies)
    for name, spec in strategies.items():
        for option, schema in spec["options"].items():
            text = json.dumps(schema)
            if '"integer"' in text or '"number"' in text:
                assert "maximum" in text or "exclusiveMaximum" in text, f"{name}.{option} has no upper bound: {text}"
    openapi = json.dumps(client.get("/openapi.json").json())
    assert "DropQueryOptions" in openapi or "dropquery" in openapi


def test_operator_settings_cannot_be_overridden_unless_allowed(make_args, tmp_path):
    args = make_args(
        f"sqlite:///{tmp_path / 'l.db'}",
        strategy_params={"centroid": {"kmeans_niter": 10}},
        option_policy={"centroid": {"forbid": ["n_init"]}, "random": {}},
    )
    with TestClient(create_inprocess_app(args)) as c:
        r = c.post("/select_batch", json={"batch_size": 2, "strategy": "centroid", "options": {"kmeans_niter": 50}})
        _assert_refused(r, 422, "kmeans_niter", "operator")
        r = c.post("/select_batch", json={"batch_size": 2, "strategy": "centroid", "options": {"n_init": 2}})
        _assert_refused(r, 422, "n_init")
        assert c.post("/select_batch", json={"batch_size": 2, "strategy": "centroid"}).status_code == 200
    allowed = make_args(
        f"sqlite:///{tmp_path / 'l2.db'}",
        strategy_params={"centroid": {"kmeans_niter": 10}},
        option_policy={"centroid": {"allow_override": ["kmeans_niter"], "bounds": {"kmeans_niter": {"le": 20}}}},
    )
    with TestClient(create_inprocess_app(allowed)) as c:
        ok = c.post("/select_batch", json={"batch_size": 2, "strategy": "centroid", "options": {"kmeans_niter": 15}})
        assert ok.status_code == 200, ok.text
        r = c.post("/select_batch", json={"batch_size": 2, "strategy": "centroid", "options": {"kmeans_niter": 30}})
        _assert_refused(r, 422, "kmeans_niter")


def test_unknown_routes_and_methods_keep_the_error_shape(client):
    _assert_refused(client.get("/no/such/route"), 404, "path")
    _assert_refused(client.get("/select_batch"), 405, "method")


def test_status_reports_auth_mode_and_readyz_checks_the_parts(client):
    status = client.get("/status").json()
    assert status["auth"] == "anonymous" and status["pool"]["rows"] == status["pool_size"]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "selector": "ok"}
    assert client.get("/healthz").json() == {"status": "ok"}


def test_anonymous_service_refuses_a_public_bind(make_args, tmp_path):
    from raydq.serve.inprocess import create_inprocess_app as make

    args = make_args(f"sqlite:///{tmp_path / 'l.db'}")
    with pytest.raises(RuntimeError, match="without authentication"):
        make(args, host="0.0.0.0")
    make(make_args(f"sqlite:///{tmp_path / 'l.db'}", allow_anonymous=True), host="0.0.0.0")  # the operator said so
    make(args, host="127.0.0.1")


def test_classes_in_labels_are_checked_with_skips_allowed(client):
    ids = [x["id"] for x in client.post("/select_batch", json={"batch_size": 3}).json()["items"]]
    r = client.post("/update_labels", json={"labels": [{"id": ids[0], "label": "hexagon"}]})
    _assert_refused(r, 422, "hexagon")
    r = client.post("/update_labels", json={"labels": [{"id": ids[0], "label": CLASSES[0], "skip": True}]})
    _assert_refused(r, 422, "skip")
    ok = client.post("/update_labels", json={"labels": [{"id": ids[1], "skip": True, "reason": "blurry"}]})
    assert ok.status_code == 200 and ok.json()["skipped"] == 1


def test_clients_read_every_capability_from_the_published_schema(client):
    """The Label Studio connector decides whether to send skips, renew leases and proxy images from the schema: a
    renamed model must not make it fall back to the older service's behaviour."""
    assert capabilities_of(client.get("/openapi.json").json()) == Capabilities(skip=True, renew=True, item_image=True)
    assert capabilities_of({}) == Capabilities(skip=False, renew=False, item_image=False)

"""Property-based fuzzing of the whole HTTP surface, in one process (the same app Serve hosts).

Two generators: schemathesis builds cases from the published OpenAPI schema (valid and invalid by it) and checks
every response against that schema; a hostile generator writes raw JSON the schema cannot describe (NaN, Infinity,
huge integers, lone surrogates, NUL and other control characters, wrong types) into every field of every endpoint.
Neither may ever get a 5xx, and every answer must be the documented shape.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation.modes import GenerationMode

from raydq.serve.inprocess import create_inprocess_app
from raydq.serve.schemas import (
    ErrorResponse,
    ReleaseBatchResponse,
    RenewBatchResponse,
    SelectBatchResponse,
    UpdateLabelsResponse,
)
from tests.serve.helpers import CLASSES, service_args

pytestmark = pytest.mark.slow


def _args(tmp_path_factory, embedding_store, strategies):
    root = tmp_path_factory.mktemp("fuzz")
    return service_args(embedding_store, f"sqlite:///{root / 'labels.db'}", strategies, select_timeout_s=30.0)


@pytest.fixture(scope="module")
def app(tmp_path_factory, embedding_store, strategies):
    application = create_inprocess_app(_args(tmp_path_factory, embedding_store, strategies))
    with TestClient(application, raise_server_exceptions=False) as client:
        application.state.client = client
        yield application


def test_schema_driven_cases_never_fail_and_conform(tmp_path_factory, embedding_store, strategies):
    app = create_inprocess_app(_args(tmp_path_factory, embedding_store, strategies))  # schemathesis runs its life
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/select_batch", "/update_labels", "/renew_batch", "/labels", "/items/{item_id}", "/status"} <= paths
    strategy = st.one_of([op.as_strategy(generation_mode=mode) for op in operations for mode in GenerationMode])
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    seen: dict[str, int] = {}

    @given(case=strategy)
    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])  # fmt: skip
    def fuzz(case) -> None:
        response = case.call()
        seen[case.path] = seen.get(case.path, 0) + 1
        case.validate_response(response, checks=checks)

    fuzz()
    assert len(seen) >= 8 and sum(seen.values()) >= 250, seen


# -- the hostile generator ------------------------------------------------------------------------------------------
NAN, POS_INF, NEG_INF = "NaN", "Infinity", "-Infinity"


class Raw(str):
    """A JSON token written as is (NaN, Infinity, a string literal with an escaped lone surrogate)."""


def _dump(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value)


nasty_text = st.one_of(
    st.sampled_from(["\\ud800", "a\\udfffb", "\\u0000", "x\\u0007y", "\\ud83d", "\\u001b[31m"]).map(
        lambda s: Raw(f'"{s}"')
    ),
    st.text(max_size=30),
    st.sampled_from([*CLASSES, "img-00001", "img-00002", ""]),
)
nasty_number = st.one_of(
    st.sampled_from([Raw(NAN), Raw(POS_INF), Raw(NEG_INF)]),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64, 10**300]),
)
scalar = st.one_of(nasty_text, nasty_number, st.booleans(), st.none())
anything = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                        max_leaves=6)  # fmt: skip
maybe = lambda s: st.one_of(s, anything)  # noqa: E731 - a field holds the right kind of thing, or anything

answer = st.fixed_dictionaries(
    {"id": maybe(nasty_text)},
    optional={"label": maybe(nasty_text), "skip": maybe(st.booleans()), "reason": maybe(nasty_text),
              "annotator": maybe(nasty_text), "colour": anything},
)  # fmt: skip
bodies = {
    "/select_batch": st.fixed_dictionaries(
        {"batch_size": maybe(nasty_number)},
        optional={"strategy": maybe(st.sampled_from(["dropquery", "centroid", "random", "probcover", "bald"])),
                  "options": maybe(st.dictionaries(st.sampled_from(["n_init", "n_passes", "kmeans_niter", "delta",
                                                                    "max_edges", "chunk_rows", "x"]), scalar,
                                                   max_size=3)),
                  "lease_seconds": maybe(nasty_number), "request_id": maybe(nasty_text)},
    ),
    "/update_labels": st.fixed_dictionaries(
        {"labels": maybe(st.lists(answer, min_size=1, max_size=3))},
        optional={"batch_id": maybe(nasty_text), "request_id": maybe(nasty_text)},
    ),
    "/release_batch": st.fixed_dictionaries({"batch_id": maybe(nasty_text)}),
    "/renew_batch": st.fixed_dictionaries(
        {"batch_id": maybe(nasty_text)}, optional={"lease_seconds": maybe(nasty_number)}
    ),
}
RESPONSES = {
    "/select_batch": SelectBatchResponse,
    "/update_labels": UpdateLabelsResponse,
    "/release_batch": ReleaseBatchResponse,
    "/renew_batch": RenewBatchResponse,
}


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_hostile_bodies_get_a_documented_answer_never_a_5xx(app, data):
    path = data.draw(st.sampled_from(sorted(bodies)))
    raw = _dump(data.draw(bodies[path]))
    r = app.state.client.post(path, content=raw.encode("utf-8", "surrogatepass"),
                              headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code < 500, f"{path} {raw!r}: {r.status_code} {r.text[:300]}"
    body = r.json()  # always JSON that decodes
    if r.status_code < 300:
        RESPONSES[path].model_validate(body)
    else:
        ErrorResponse.model_validate(body)
        assert all(d["loc"] for d in body["detail"]), body

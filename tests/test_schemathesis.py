"""Schemathesis against the served /openapi.yaml, with a valid token, over every operation.

Positive cases (schema-valid requests) must be accepted and answered as the document says;
negative cases (schema-violating requests) must be refused with a 4xx the document describes.
Neither may ever get a 5xx. FUZZ_EXAMPLES bounds the examples per operation and mode.
"""

import os
from pathlib import Path

import pytest
import schemathesis
import yaml
from conftest import Person
from conftest import callback_params
from conftest import exchange
from conftest import gpt_params
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from schemathesis.generation import GenerationMode

DOCUMENT = yaml.safe_load((Path(__file__).parent.parent / "openapi.yaml").read_text())
OPERATIONS = [
    (method.upper(), path, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if method in ("get", "post", "put", "patch", "delete")
]
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path, operation in OPERATIONS
    for mode in GenerationMode
    # An operation without parameters or a body has nothing to get wrong.
    if mode is GenerationMode.POSITIVE or operation.get("parameters") or operation.get("requestBody")
]
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def served_schema(base_url):
    """The document exactly as the running app serves it, naming its own base URL."""
    return schemathesis.openapi.from_url(f"{base_url}/openapi.yaml")


@pytest.fixture(scope="module")
def access_token(base_url, world) -> str:
    """A token with every todo scope, from the GPT Action flow, for an organization with todos."""
    org, gpt = world.org(), world.client()
    code = callback_params(Person(base_url, org.admin_email).authorize(gpt_params(gpt)))["code"]
    return exchange(base_url, gpt, code).json()["access_token"]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_the_api_keeps_the_documents_promises(served_schema, access_token, method, path, mode):
    operation = served_schema[path][method]

    @FUZZ
    @given(case=operation.as_strategy(mode))
    def check(case):
        # Every default check: no 5xx, documented status codes, content types, headers and
        # response schemas, schema-valid data accepted and schema-violating data refused.
        case.call_and_validate(headers={"Authorization": f"Bearer {access_token}"})

    check()

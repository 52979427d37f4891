"""openapi.yaml: generated from the API views, committed, valid, complete and served with the real URL."""

from pathlib import Path

import pytest
import requests
import yaml
from conftest import setting
from openapi_spec_validator import validate

from connected_todos.api import OPENAPI_BASE_URL
from connected_todos.api import openapi_spec
from connected_todos.api import openapi_yaml

COMMITTED = Path(__file__).parent.parent / "openapi.yaml"


@pytest.fixture(scope="module")
def document(app) -> dict:
    with app.test_request_context():
        return openapi_spec(OPENAPI_BASE_URL)


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_committed_file_is_the_generated_one(app):
    with app.app_context():
        generated = openapi_yaml(OPENAPI_BASE_URL)
    assert COMMITTED.read_text() == generated, "openapi.yaml is stale: run `flask --app app openapi`"


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_operation_ids_are_the_agreed_ones(document):
    ids = sorted(op["operationId"] for _, _, op in operations(document))
    assert ids == sorted(["listTodos", "createTodo", "getTodo", "updateTodo", "deleteTodo", "getMe"])


def test_texts_are_short_enough_for_gpt_actions(document):
    for _, _, op in operations(document):
        assert len(op["summary"]) <= 300 and len(op.get("description", "")) <= 300


def test_every_object_schema_has_explicit_properties(document):
    def walk(schema):
        if isinstance(schema, dict):
            if "object" in (schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")]):
                assert schema.get("properties"), schema
            for value in schema.values():
                walk(value)
        elif isinstance(schema, list):
            for value in schema:
                walk(value)

    walk(document["components"]["schemas"])


def test_only_deletion_is_consequential(document):
    flags = {op["operationId"]: op["x-openai-isConsequential"] for _, _, op in operations(document)}
    assert flags == {
        "listTodos": False,
        "createTodo": False,
        "getTodo": False,
        "updateTodo": False,
        "deleteTodo": True,
        "getMe": False,
    }


def test_the_security_scheme_is_oauth2_code_with_idp_and_token(document):
    flow = document["components"]["securitySchemes"]["oauth2"]["flows"]["authorizationCode"]
    assert flow["authorizationUrl"].endswith("/idp") and flow["tokenUrl"].endswith("/oauth/token")


def test_spec_routes_and_api_routes_are_the_same(app, document):
    in_spec = {(path, method.upper()) for path, method, _ in operations(document)}
    in_app = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = rule.rule.replace("<int:todo_id>", "{todo_id}")
            in_app |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert in_spec == in_app


def test_the_served_document_names_this_deployment(base_url):
    served = yaml.safe_load(requests.get(f"{base_url}/openapi.yaml").text)
    assert served["servers"] == [{"url": base_url}]
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "todos.example.com"}
    assert requests.get(f"{base_url}/openapi.yaml", headers=forged).status_code == 400  # RFC 9700 §4.13


def test_the_served_document_names_public_url_whatever_the_host_header(app, base_url):
    with setting(app, "PUBLIC_URL", "https://todos.example.com"):
        https = {"X-Forwarded-Proto": "https"}
        document = yaml.safe_load(requests.get(f"{base_url}/openapi.yaml", headers=https).text)
    assert document["servers"] == [{"url": "https://todos.example.com"}]
    flow = document["components"]["securitySchemes"]["oauth2"]["flows"]["authorizationCode"]
    assert flow["authorizationUrl"] == "https://todos.example.com/idp"

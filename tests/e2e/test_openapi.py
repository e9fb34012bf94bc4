"""``GET /apisix/admin/openapi.json``: valid OpenAPI 3.1 (openapi-spec-validator), covering
every admin route, and schemathesis (its own process) fuzzing a live admin API from it: no
5xx, every status, content type and body as documented.  Bounded: a fixed seed and a few
examples per operation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from llmgate.admin.openapi import document
from llmgate.admin.openapi.resources import EXAMPLES
from llmgate.admin.resources import RESOURCES
from tests.net import LiveGateway
from tests.support import ADMIN_KEY

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
EXAMPLES_PER_OPERATION = 4
SEED = 20261205


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with LiveGateway(tmp_path_factory.mktemp("openapi")) as live:
        yield live


def test_the_document_is_valid_openapi_31() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on any violation of the 3.1 specification


def test_every_resource_and_method_is_documented() -> None:
    paths = document()["paths"]
    for name, kind in RESOURCES.items():
        prefix = (
            "/apisix/admin/consumers/{username}/" if name == "credentials" else "/apisix/admin/"
        )
        collection = f"{prefix}{name}"
        item = f"{collection}/{{{'username' if kind.id_field == 'username' else 'id'}}}"
        assert set(paths[collection]) >= {"get", "put", "post"}, name
        assert set(paths[item]) == {"get", "put", "patch", "delete"}, name
        for method in kind.unsupported:
            where = paths[collection] if method == "post" else paths[item]
            assert "405" in where[method]["responses"], (name, method)
        body = paths[item]["put"]["requestBody"]["content"]["application/json"]["schema"]
        schema = document()["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
        closed = kind.model.model_config.get("extra") == "forbid"
        assert schema.get("additionalProperties") is (False if closed else None), name
        assert "$defs" not in str(schema) and "$ref" not in str(schema), name
    for path in (
        "/apisix/admin/plugins/list",
        "/apisix/admin/plugins/reload",
        "/apisix/admin/plugins/{name}",
        "/apisix/admin/schema/{name}",
        "/apisix/admin/schema/plugins/{name}",
        "/apisix/admin/schema/validate/{resource}",
        "/apisix/admin/usage",
        "/apisix/admin/usage/calls",
        "/apisix/admin/openapi.json",
    ):
        assert path in paths, path
    for operations in paths.values():
        for operation in operations.values():
            errors = [s for s in operation["responses"] if s.startswith(("4", "5"))]
            assert "401" in errors and "503" in errors
            for status in errors:
                content = operation["responses"][status]["content"]
                assert "application/json" in content or status == "400"


def test_served_document_is_the_generated_one(gw: LiveGateway) -> None:
    assert gw.admin("GET", "openapi.json") == (200, document())
    status, _ = gw.admin("GET", "openapi.json", key="wrong")
    assert status == 401


def test_the_examples_are_accepted(gw: LiveGateway) -> None:
    body = document()["paths"]["/apisix/admin/routes/{id}"]["put"]["requestBody"]
    assert body["content"]["application/json"]["example"] == EXAMPLES["routes"]
    order = sorted(EXAMPLES, key=lambda name: name == "credentials")  # after its consumer
    written = []
    for name in order:
        if name not in RESOURCES:
            continue  # a resource of another branch, not here yet
        path = {
            "consumers": "consumers",
            "credentials": "consumers/jack/credentials/example",
        }.get(name, f"{name}/example")
        gw.put(path, EXAMPLES[name])
        written.append("consumers/jack" if name == "consumers" else path)
    for path in reversed(written):
        gw.delete(path)


def test_schemathesis_finds_nothing(gw: LiveGateway) -> None:
    url = gw.gw.admin_url
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/apisix/admin/openapi.json",
        "--url",
        url,
        "-H",
        f"X-API-KEY: {ADMIN_KEY}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,fuzzing,stateful",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--no-shrink",
        "--request-timeout",
        "10",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=gw.workdir,
        env={"PATH": "/usr/bin:/bin", "HOME": str(gw.workdir), "NO_COLOR": "1"},
    )
    report = result.stdout[-8000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert " passed" in report and "failures" not in report.split("SUMMARY")[-1], report


def test_query_parameters_document_what_the_api_accepts(gw: LiveGateway) -> None:
    """A page below 1 is page 1 (as APISIX), so the document must not say ``minimum: 1``: a
    client generated from it would refuse what the API accepts (and a negative-data checker
    flags the API for accepting it)."""
    status, body = gw.admin("GET", "routes?page=-3&page_size=10")
    assert status == 200 and body["total"] >= 0
    parameters = document()["paths"]["/apisix/admin/routes"]["get"]["parameters"]
    page = next(p for p in parameters if p["name"] == "page")
    Draft202012Validator(page["schema"]).validate(-3)


@pytest.mark.parametrize(
    ("path", "name", "accepted", "refused"),
    [
        ("/apisix/admin/usage", "to", ["", "0", "1796500000"], ["abc", "-1"]),
        ("/apisix/admin/usage/calls", "limit", ["", "1", "0001", "1000"], ["0", "1001", "x"]),
    ],
)
def test_usage_query_patterns_match_the_api(
    gw: LiveGateway, path: str, name: str, accepted: list[str], refused: list[str]
) -> None:
    """What the document's pattern allows is what the API takes (empty: not given)."""
    parameters = document()["paths"][path]["get"]["parameters"]
    schema = next(p for p in parameters if p["name"] == name)["schema"]
    for value, ok in [(v, True) for v in accepted] + [(v, False) for v in refused]:
        status, _ = gw.admin("GET", f"{path.removeprefix('/apisix/admin/')}?{name}={value}")
        assert (status == 200) == ok, (value, status)
        assert Draft202012Validator(schema).is_valid(value) == ok, (value, schema)

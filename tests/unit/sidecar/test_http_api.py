"""The sidecar's HTTP API on a loopback port: answers, errors that say what is wrong, no 500s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sidecar_snapshots import FACTS, snapshot_for

from evaluator_sidecar.policy.errors import EvaluationError, InvalidTaskFactsError
from evaluator_sidecar.sidecar.http import ROUTES, HTTPServer, SidecarAPI, serve_api
from evaluator_sidecar.sidecar.http.openapi import openapi_document
from evaluator_sidecar.sidecar.manager import PKGManager

LIMIT = 4096


class Client:
    """A raw HTTP/1.1 client with one keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def raw(self, data: bytes, responses: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(data)
            await writer.drain()
            out = []
            for _ in range(responses):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                lines = head.decode().split("\r\n")
                status = int(lines[0].split()[1])
                headers = {
                    k.lower(): v.strip()
                    for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                out.append((status, headers, body))
            return out
        finally:
            writer.close()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = "application/json",
    ) -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        return (await self.raw(head.encode() + b"\r\n" + body))[0]

    async def json(self, method: str, path: str, value: Any = None) -> tuple[int, Any]:
        body = b"" if value is None else orjson.dumps(value)
        status, _, payload = await self.request(method, path, body)
        return status, orjson.loads(payload) if payload else None


@pytest.fixture
async def sidecar() -> AsyncIterator[tuple[PKGManager, Client]]:
    manager = PKGManager(None, None, env="prod", device_id="http-1")
    server: HTTPServer = await serve_api(SidecarAPI(manager), "127.0.0.1", 0, LIMIT)
    try:
        yield manager, Client(server.port)
    finally:
        await server.close()


@pytest.fixture
async def loaded(sidecar: tuple[PKGManager, Client]) -> tuple[PKGManager, Client]:
    manager, _ = sidecar
    await manager.activate_snapshot(snapshot_for("rules@1.4.0"))
    await manager.activate_snapshot(snapshot_for("rules@1.5.0"))
    return sidecar


def error_message(body: Any) -> str:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"status", "code", "message"}
    return str(body["error"]["message"])


class TestEvaluate:
    async def test_returns_the_documented_result_of_the_active_snapshot(
        self, loaded: tuple[PKGManager, Client]
    ) -> None:
        manager, client = loaded
        status, body = await client.json("POST", "/v1/evaluate", FACTS)
        assert status == 200
        active = manager.get_active_evaluator()
        assert active is not None
        # The evaluator's result, plus the version of the fact set it used (none loaded: 0).
        assert body == {**active.evaluate(FACTS), "facts_version": 0}
        assert body["snapshot"] == "rules@1.5.0"

    async def test_version_parameter_evaluates_a_cached_version(
        self, loaded: tuple[PKGManager, Client]
    ) -> None:
        _, client = loaded
        status, body = await client.json("POST", "/v1/evaluate?version=rules%401.4.0", FACTS)
        assert (status, body["snapshot"]) == (200, "rules@1.4.0")

    async def test_an_uncached_version_is_a_404_naming_the_cached_ones(
        self, loaded: tuple[PKGManager, Client]
    ) -> None:
        _, client = loaded
        status, body = await client.json("POST", "/v1/evaluate?version=rules@0.1.0", FACTS)
        assert status == 404
        assert "'rules@0.1.0' is not cached" in error_message(body)
        assert "rules@1.4.0" in error_message(body)

    async def test_no_active_snapshot_is_a_503(self, sidecar: tuple[PKGManager, Client]) -> None:
        _, client = sidecar
        status, body = await client.json("POST", "/v1/evaluate", FACTS)
        assert status == 503
        assert "no policy snapshot is loaded" in error_message(body)


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "says"),
        [
            (b"{not json", "not valid JSON"),
            (b"[1, 2]", "must be a JSON object of task facts, not an array"),
            (b'"vip"', "not a string"),
            (b"", "the request body is empty"),
            (b'{"tags": "vip"}', "invalid task facts"),
            (b'{"signals": {"x2": "high"}}', "invalid task facts"),
            (b'{"tag": ["vip"]}', "invalid task facts"),
        ],
    )
    async def test_is_a_400_saying_what_is_wrong(
        self, loaded: tuple[PKGManager, Client], body: bytes, says: str
    ) -> None:
        _, client = loaded
        status, _, payload = await client.request("POST", "/v1/evaluate", body)
        assert status == 400
        assert says in error_message(orjson.loads(payload))

    async def test_unknown_query_parameters_are_named(
        self, loaded: tuple[PKGManager, Client]
    ) -> None:
        _, client = loaded
        status, body = await client.json("POST", "/v1/evaluate?verison=x", FACTS)
        assert status == 400
        assert "verison" in error_message(body)

    async def test_a_body_over_the_limit_is_a_413(self, loaded: tuple[PKGManager, Client]) -> None:
        _, client = loaded
        big = orjson.dumps({"context": {"blob": "x" * LIMIT}})
        status, _, payload = await client.request("POST", "/v1/evaluate", big)
        assert status == 413
        assert f"limit of {LIMIT} bytes" in error_message(orjson.loads(payload))

    async def test_a_chunked_body_over_the_limit_is_a_413(
        self, loaded: tuple[PKGManager, Client]
    ) -> None:
        _, client = loaded
        chunk = b"x" * 3000
        data = (
            b"POST /v1/evaluate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2
            + b"0\r\n\r\n"
        )
        [(status, _, _)] = await client.raw(data)
        assert status == 413

    async def test_other_media_types_are_a_415(self, loaded: tuple[PKGManager, Client]) -> None:
        _, client = loaded
        status, _, _ = await client.request("POST", "/v1/evaluate", b"tags=vip", "text/plain")
        assert status == 415

    async def test_wrong_method_and_unknown_path(self, loaded: tuple[PKGManager, Client]) -> None:
        _, client = loaded
        status, headers, _ = await client.request("GET", "/v1/evaluate")
        assert (status, headers["allow"]) == (405, "POST")
        status, body = await client.json("GET", "/v2/nothing")
        assert status == 404
        assert "/openapi.json" in error_message(body)

    async def test_malformed_http_is_a_400(self, loaded: tuple[PKGManager, Client]) -> None:
        _, client = loaded
        [(status, headers, _)] = await client.raw(
            b"POST /v1/evaluate HTTP/1.1\r\nContent-Length: x\r\n\r\n"
        )
        assert status == 400
        assert headers["connection"] == "close"

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        value=st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False)
            | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["tags", "signals", "context", "facts", "now", "x"]),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=12,
        )
    )
    async def test_no_input_produces_a_500(
        self, loaded: tuple[PKGManager, Client], value: Any
    ) -> None:
        _, client = loaded
        status, _, _ = await client.request("POST", "/v1/evaluate", orjson.dumps(value))
        assert status in (200, 400)


class TestConnection:
    async def test_keep_alive_and_pipelined_requests_answer_in_order(
        self, loaded: tuple[PKGManager, Client]
    ) -> None:
        _, client = loaded
        body = orjson.dumps(FACTS)
        one = (
            b"POST /v1/evaluate?version=rules@1.4.0 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        two = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        answers = await client.raw(one + two + one, responses=3)
        assert [a[0] for a in answers] == [200, 200, 200]
        assert orjson.loads(answers[0][2])["snapshot"] == "rules@1.4.0"
        assert orjson.loads(answers[1][2])["status"] == "alive"


class TestIntrospection:
    async def test_health_readiness_and_metadata(self, sidecar: tuple[PKGManager, Client]) -> None:
        manager, client = sidecar
        assert (await client.json("GET", "/healthz"))[0] == 200
        status, body = await client.json("GET", "/readyz")
        assert (status, body["ready"], body["reasons"]) == (503, False, ["no active evaluator"])
        await manager.activate_snapshot(snapshot_for("rules@1.4.0"))
        status, body = await client.json("GET", "/readyz")
        assert (status, body["ready"]) == (200, True)
        status, meta = await client.json("GET", "/v1/metadata")
        assert (status, meta["version"], meta["cached_versions"]) == (
            200,
            "rules@1.4.0",
            ["rules@1.4.0"],
        )

    async def test_metrics_in_prometheus_format(self, loaded: tuple[PKGManager, Client]) -> None:
        _, client = loaded
        for _ in range(3):
            await client.json("POST", "/v1/evaluate", FACTS)
        await client.request("POST", "/v1/evaluate", b"[]")
        await client.request("POST", "/v1/evaluate", b'{"tags": 1}')
        status, headers, body = await client.request("GET", "/metrics")
        assert status == 200
        assert headers["content-type"].startswith("text/plain")
        text = body.decode()
        for name in (
            "pkg_snapshot_load_duration_seconds_bucket",
            'pkg_evaluation_duration_seconds_count{engine="native"} 3.0',
            'pkg_evaluation_errors_total{engine="native",kind="bad_input"} 1.0',
            "pkg_hotswap_count_total 2.0",
            "pkg_redis_reconnect_count_total 0.0",
            'pkg_active_version{version="rules@1.5.0"} 1.0',
            "pkg_cached_versions_count 2.0",
            "pkg_degraded_mode 0.0",
            "pkg_fixture_failures_total 0.0",
        ):
            assert name in text, name


def check_schema(value: Any, schema: dict[str, Any], doc: dict[str, Any], where: str = "$") -> None:
    """Enough of JSON Schema for this document: $ref, type (incl. lists), required, properties."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = doc["components"]["schemas"][name]
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        kinds = {
            "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
        }  # fmt: skip
        ok = any(
            (t == "integer" and isinstance(value, int) and not isinstance(value, bool))
            or (t == "number" and isinstance(value, int | float) and not isinstance(value, bool))
            or (t in kinds and isinstance(value, kinds[t]))
            for t in names
        )
        assert ok, f"{where}: {value!r} is not {types}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                check_schema(value[key], sub, doc, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check_schema(item, schema["items"], doc, f"{where}[{i}]")


class TestOpenAPI:
    async def test_served_document_is_the_one_in_the_code(
        self, sidecar: tuple[PKGManager, Client]
    ) -> None:
        _, client = sidecar
        status, body = await client.json("GET", "/openapi.json")
        assert status == 200
        assert body == orjson.loads(orjson.dumps(openapi_document()))

    def test_documents_every_route_with_its_method(self) -> None:
        paths = openapi_document()["paths"]
        assert set(paths) == set(ROUTES)
        for path, method in ROUTES.items():
            assert set(paths[path]) == {method.lower()}

    async def test_real_responses_match_the_documented_schemas(
        self, loaded: tuple[PKGManager, Client]
    ) -> None:
        _, client = loaded
        doc = openapi_document()
        cases = [
            ("POST", "/v1/evaluate", FACTS, 200),
            ("POST", "/v1/evaluate", [1], 400),
            ("POST", "/v1/evaluate?version=nope", FACTS, 404),
            ("GET", "/v1/metadata", None, 200),
            ("GET", "/healthz", None, 200),
            ("GET", "/readyz", None, 200),
            ("GET", "/openapi.json", None, 200),
        ]
        for method, path, value, expected in cases:
            status, body = await client.json(method, path, value)
            assert status == expected
            operation = doc["paths"][path.split("?")[0]][method.lower()]
            documented = operation["responses"][str(status)]
            schema = documented["content"]["application/json"]["schema"]
            check_schema(body, schema, doc)


class TestErrorKindIsTheExceptionsType:
    """400 for InvalidTaskFactsError, 422 for any other EvaluationError, whatever the wording."""

    @pytest.mark.parametrize(
        ("exc", "status", "kind"),
        [
            (InvalidTaskFactsError("tags must be a list"), 400, "bad_input"),
            (
                EvaluationError("invalid task facts: worded like bad input, but a trap"),
                422,
                "engine",
            ),
        ],
    )
    async def test_dispatch(
        self,
        loaded: tuple[PKGManager, Client],
        monkeypatch: pytest.MonkeyPatch,
        exc: EvaluationError,
        status: int,
        kind: str,
    ) -> None:
        manager, client = loaded
        evaluator = manager.get_active_evaluator()
        assert evaluator is not None

        def fail(_facts: Any, _environment: Any = None) -> Any:
            raise exc

        monkeypatch.setattr(evaluator, "evaluate", fail)
        got, body = await client.json("POST", "/v1/evaluate", FACTS)
        assert (got, body["error"]["message"]) == (status, str(exc))
        _, _, metrics = await client.request("GET", "/metrics")
        assert (
            f'pkg_evaluation_errors_total{{engine="native",kind="{kind}"}} 1.0' in metrics.decode()
        )


class TestNumbersBeyondFloat64:
    """A WASM policy's number beyond float64 (kept as OPA keeps it) is written as JSON."""

    def test_a_decimal_in_a_result_is_written_as_its_number_text(self) -> None:
        from decimal import Decimal

        from evaluator_sidecar.sidecar.http.api import _number_text

        body = orjson.dumps({"big": Decimal("2E+308")}, default=_number_text)
        assert body == b'{"big":2E+308}'

    def test_anything_else_unserialisable_still_fails(self) -> None:
        from evaluator_sidecar.sidecar.http.api import _number_text

        with pytest.raises(TypeError):
            orjson.dumps({"x": object()}, default=_number_text)

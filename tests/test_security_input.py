"""Input limits (issue 13 item 3): names and ids checked by the domain's rules, NUL refused
everywhere, JSON bodies only, the API key from the header only and never in the access
log, 405 with Allow, and an OpenAPI document that states what the server checks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import uvicorn

from api.http.access_log import ACCESS_LOGGER, redact
from api.http.app import create_app
from api.http.params import query_schema
from domain.model.errors import InvalidInputError
from domain.model.input_rules import check_display_name, check_no_nul, check_username
from tests import log_helpers
from tests.http_helpers import (
    ROOT,
    SMALL,
    WEB_KEY,
    Env,
    error,
    free_port,
    in_process,
    new_client_key,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    monkeypatch.setenv("DATAENGINE_RATE_LIMIT", "false")
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=3)
    async with in_process(app) as client:
        yield Env(client, await new_client_key(client)), tmp_path


def events(folder: Path) -> int:
    return int(log_helpers.read(folder, "SELECT count(*) FROM stored_events")[0][0])


def person(id: str, display_name: str = "Someone") -> dict[str, str]:
    return {"id": id, "display_name": display_name, "auth_method": "local"}


# ------------------------------------------------------------------ the domain's rules
@pytest.mark.parametrize(
    "name",
    ["", "   ", "a\nb", "tab\there", "esc\x1b[31m", "nul\x00", "del\x7f", "c1\x85", "ls\u2028"],
)
def test_names_with_control_characters_or_blank_are_refused(name: str) -> None:
    for check in (check_username, check_display_name):
        with pytest.raises(InvalidInputError):
            check(name)


def test_name_lengths_and_plain_unicode() -> None:
    assert check_username("x" * 128) and check_display_name("y" * 256)
    assert check_display_name("Zoë ✓ 名前") == "Zoë ✓ 名前"
    with pytest.raises(InvalidInputError, match="129 characters long, the limit is 128"):
        check_username("x" * 129)
    with pytest.raises(InvalidInputError, match="the limit is 256"):
        check_display_name("y" * 257)
    with pytest.raises(InvalidInputError, match="NUL"):
        check_no_nul("text\x00more", "the text")


# ------------------------------------------------------------------ over HTTP
@pytest.mark.parametrize(
    "user",
    [
        person("line\nbreak"),
        person("x" * 129),
        person(""),
        person("fine", "bell\x07"),
        person("fine", ""),
        person("fine", "z" * 257),
        person("fine", "   "),
    ],
)
async def test_bad_names_are_422_and_record_nothing(env: Any, user: dict[str, str]) -> None:
    a, folder = env
    before = events(folder)
    r = await a.post("/api/v1/tasks/", {"type": "initial_prompt", "user": user})
    error(r, 422, 422)
    assert events(folder) == before


async def test_an_existing_user_cannot_take_a_bad_display_name(env: Any) -> None:
    a, folder = env
    task = await a.task(person("kept"), "initial_prompt")
    r = await a.get("/api/v1/frontend_users/local/kept")
    user_id = r.json()["user_id"]
    before = events(folder)
    for bad in ("", "new\nline", "w" * 257):
        r = await a.client.put(
            f"/api/v1/users/{user_id}", params={"display_name": bad}, headers=a.trusted
        )
        assert r.status_code == 422, (bad, r.text)
    assert events(folder) == before and task["id"]


async def test_nul_is_refused_in_texts_paths_and_queries(env: Any) -> None:
    a, folder = env
    task = await a.task(person("writer"), "initial_prompt")
    await a.ack(task, "f-nul")
    before = events(folder)
    body = {
        "type": "text_reply_to_message",
        "message_id": "f-nul",
        "user_message_id": "m-nul",
        "text": "a prompt\u0000 with a NUL",
        "user": person("writer"),
    }
    assert "NUL" in error(await a.post("/api/v1/tasks/interaction", body), 422, 422)
    nack = await a.post(f"/api/v1/tasks/{task['id']}/nack", {"reason": "why\u0000"})
    assert "NUL" in error(nack, 422, 422)
    assert "NUL" in error(await a.get("/api/v1/frontend_messages/a%00b"), 422, 422)
    assert "NUL" in error(await a.get("/api/v1/messages/", lang="e\x00n"), 422, 422)
    assert events(folder) == before
    # an escaped backslash followed by u0000 is text, not a NUL
    body["text"] = "a prompt about \\u0000 escapes"
    r = await a.post("/api/v1/tasks/interaction", body)
    assert r.status_code == 200, r.text


async def test_only_json_bodies(env: Any) -> None:
    a, folder = env
    before = events(folder)
    payload = b'{"type": "initial_prompt", "user": {"id": "j", "display_name": "J", "auth_method": "local"}}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**a.h, **({"Content-Type": content_type} if content_type else {})}
        r = await a.client.post("/api/v1/tasks/", content=payload, headers=headers)
        found = r.json()
        assert r.status_code == 415 and found["error_code"] == 422, r.text
        assert "application/json" in found["message"]
    assert events(folder) == before
    headers = {**a.h, "Content-Type": "application/json; charset=utf-8"}
    assert (await a.client.post("/api/v1/tasks/", content=payload, headers=headers)).is_success


async def test_the_api_key_is_read_from_the_header_only(env: Any) -> None:
    a, _ = env
    r = await a.client.get("/api/v1/stats/", params={"api_key": WEB_KEY})
    assert "X-API-Key header" in error(r, 403, 2)
    r = await a.client.get("/api/v1/stats/", params={"api_key": WEB_KEY}, headers=a.trusted)
    error(r, 403, 2)  # refused even beside a valid header: the URL is already in logs
    assert (await a.client.get("/api/v1/stats/", headers=a.trusted)).status_code == 200


def test_redact_blanks_secret_query_values() -> None:
    assert redact("/x?api_key=s3cret&b=1") == "/x?api_key=[redacted]&b=1"
    assert redact("/x?a=1&API_KEY=s3cret") == "/x?a=1&API_KEY=[redacted]"
    assert redact("/x?my_api_key=1") == "/x?my_api_key=1"


def test_keys_never_reach_uvicorns_access_log(tmp_path: Path, monkeypatch) -> None:
    """A real uvicorn with its own access log format: the key sent in a URL is not written."""
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    secret = "do-not-log-" + uuid4().hex
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), process_interval=0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="info", access_log=True))
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        handler = Keep()  # after uvicorn configured its loggers
        logging.getLogger(ACCESS_LOGGER).addHandler(handler)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health?api_key={secret}").status_code == 200
        assert httpx.get(f"{base}/api/v1/stats/?api_key={secret}").status_code == 403
        assert httpx.get(f"{base}/api/v1/stats/", headers={"X-API-Key": secret}).status_code == 403
    finally:
        server.should_exit = True
        thread.join(30)
        logging.getLogger(ACCESS_LOGGER).removeHandler(handler)
    assert len(lines) == 3, lines
    assert all(secret not in line for line in lines), lines
    assert "api_key=[redacted]" in lines[0]


async def test_405_names_every_method_the_path_takes(env: Any) -> None:
    a, _ = env
    r = await a.client.delete("/api/v1/messages/cursor", headers=a.h)  # not a message id
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert r.json()["message"]
    r = await a.client.patch(f"/api/v1/users/{uuid4()}", headers=a.h)
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE"}
    r = await a.client.get("/api/v1/stats/cached/update", headers=a.h)  # POST only
    assert r.status_code == 405 and "POST" in r.headers["allow"]


# ------------------------------------------------------------------ the document
async def test_the_document_states_every_status_and_the_audit_digest(env: Any) -> None:
    a, _ = env
    doc = (await a.client.get("/openapi.json")).json()
    assert "get" in doc["paths"]["/api/v1/audit/digest"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            statuses = set(op["responses"])
            assert {"400", "403", "404", "409", "422", "429", "503", "507"} <= statuses, path
            if method in ("post", "put"):
                assert "413" in statuses, (method, path)
            if "requestBody" in op:
                assert "415" in statuses, (method, path)
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] in ("message_id", "user_id", "task_id"):
                    assert param["schema"] == {"type": "string", "format": "uuid"}, path
    user = doc["components"]["schemas"]["User"]["properties"]
    assert user["id"]["maxLength"] == 128 and user["display_name"]["maxLength"] == 256
    assert "pattern" in user["id"]


BAD = {"boolean": "maybe", "integer": "lots", "uuid": "not-a-uuid", "date-time": "yesterday"}


async def test_every_typed_query_parameter_is_checked_as_documented(env: Any) -> None:
    """For each documented query parameter with a type, format or enum, a value outside it
    is refused (422 naming the parameter) before the handler runs: the document's table is
    the server's (api.http.params)."""
    a, _ = env
    doc = (await a.client.get("/openapi.json")).json()
    checked = 0
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            concrete = path
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    concrete = concrete.replace("{" + param["name"] + "}", str(uuid4()))
            for param in op.get("parameters", []):
                schema = param["schema"]
                if param["in"] != "query" or param["name"] == "sort_key":
                    continue
                assert schema == query_schema(path, param["name"])
                kind = "enum" if "enum" in schema else schema.get("format", schema.get("type"))
                bad = BAD.get(kind, "not-in-the-enum" if kind == "enum" else None)
                if bad is None:
                    continue
                r = await a.client.request(
                    method.upper(), concrete, params={param["name"]: bad}, headers=a.trusted
                )
                assert r.status_code == 422, (method, path, param["name"], r.text)
                assert param["name"] in r.json()["message"]
                checked += 1
    assert checked > 30

"""Contract test against the OpenAPI document Open-Assistant published (backend-openapi.json,
read from ../shared/fixtures/oa/; skipped when it is absent, never copied here).

1. Every OA path + method is served here (path parameters may be named differently).
2. Every answer we send to a well-formed request for each OA operation validates against
   OA's schema for that status (extra fields allowed). OA's document comes from pydantic
   v1, which leaves optional fields out of ``required`` and sends them as null without
   saying ``nullable``: a field that is not required may be null here too. An answer with
   a status OA does not document must be our error shape ({message, error_code}).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from api.http.app import build_api, create_app
from api.http.service import Service
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, in_process, new_client_key

FIXTURES = Path(
    os.environ.get(
        "DATAENGINE_OA_FIXTURES", Path(__file__).resolve().parents[2] / "shared/fixtures/oa"
    )
)
DOC_PATH = FIXTURES / "backend-openapi.json"
pytestmark = pytest.mark.skipif(not DOC_PATH.exists(), reason=f"{DOC_PATH} is absent")
ERROR = {
    "type": "object",
    "required": ["message", "error_code"],
    "properties": {"message": {"type": "string"}, "error_code": {"type": "integer"}},
}


def template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def oa_doc() -> dict[str, Any]:
    return json.loads(DOC_PATH.read_text())


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def test_every_oa_operation_is_served(tmp_path: Path) -> None:
    ours = {(e.method.lower(), template(e.path)) for e in build_api(Service(tmp_path)).endpoints}
    missing = [
        f"{m.upper()} {p}" for m, p, _ in operations(oa_doc()) if (m, template(p)) not in ours
    ]
    assert not missing, f"{len(missing)} OA operations missing:\n" + "\n".join(missing)


# ------------------------------------------------------------------ schema validation
def _loosen(node: Any) -> Any:
    """Refs into one registry resource; pydantic v1's optional fields may be null; extra
    fields allowed."""
    if isinstance(node, list):
        return [_loosen(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _loosen(v) for k, v in node.items() if k != "additionalProperties" or v is not False}
    if isinstance(out.get("$ref"), str) and out["$ref"].startswith("#/"):
        out["$ref"] = "oa.json" + out["$ref"]
    if isinstance(out.get("properties"), dict):
        required = set(out.get("required", ()))
        out["properties"] = {
            k: v if k in required else {"anyOf": [v, {"type": "null"}]}
            for k, v in out["properties"].items()
        }
    return out


def validator(doc: dict[str, Any]) -> Any:
    loose = _loosen(doc)
    registry = Registry().with_resource(
        "oa.json", Resource.from_contents(loose, default_specification=DRAFT7)
    )

    def check(schema: dict[str, Any], body: Any) -> list[str]:
        found = Draft7Validator(_loosen(schema), registry=registry).iter_errors(body)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]

    return check


def test_the_validator_refuses_a_wrong_answer() -> None:
    check = validator(oa_doc())
    tree_counts = {"$ref": "#/components/schemas/TreeMessageCountStats"}
    assert check(tree_counts, {"message_tree_id": "x", "state": "growing"})  # fields missing
    good = {
        "message_tree_id": "7b0c2c1e-0000-4000-8000-000000000000",
        "state": "growing",
        "depth": 1,
        "oldest": "2026-01-01T00:00:00+00:00",
        "youngest": "2026-01-02T00:00:00+00:00",
        "count": 2,
        "goal_tree_size": 3,
        "extra": True,
    }
    assert check(tree_counts, good) == []  # an extra field is allowed
    assert check(tree_counts, {**good, "oldest": None})  # a required field is not nullable


U = {"id": "u1", "display_name": "User 1", "auth_method": "local"}


def who(i: int) -> dict[str, str]:
    return {"id": f"u{i}", "display_name": f"User {i}", "auth_method": "local"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: Any) -> AsyncIterator[tuple[Env, dict[str, str]]]:
    """A tree (a prompt by u1, accepted, a reply by u2), a reported prompt, open tasks."""
    monkeypatch.setenv("DATAENGINE_SYNCHRONOUS", "NORMAL")
    monkeypatch.delenv("DATAENGINE_TOXICITY_MODEL", raising=False)
    app = create_app(tmp_path, SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY, seed=1)
    async with in_process(app) as client:
        env = Env(client, WEB_KEY)
        await new_client_key(client)
        await env.prompt(U, "What is the capital of France?", "p1")
        root = await env.accept_prompt([who(2), who(3)])
        await env.reply(who(2), "Paris is the capital of France.", "r1")
        assert (await env.post("/api/v1/frontend_users/", who(8))).status_code == 200
        assert (await env.post("/api/v1/frontend_users/", who(9))).status_code == 200
        users = {}
        for i in (1, 8, 9):
            r = await env.get(f"/api/v1/frontend_users/local/u{i}")
            users[f"u{i}"] = r.json()["user_id"]
        children = (await env.get(f"/api/v1/messages/{root}/children")).json()
        report = {
            "type": "text_labels",
            "message_id": root,
            "labels": {"spam": 1},
            "user": who(4),
            "is_report": True,
        }
        assert (await env.post("/api/v1/text_labels/", report)).status_code == 204
        tasks = {}
        for name, i in (("ack", 5), ("nack", 6), ("interaction", 7)):
            tasks[name] = (await env.task(who(i), "initial_prompt"))["id"]
        await env.ack({"id": tasks["interaction"]}, "inter")
        yield (
            env,
            {
                "root": root,
                "root_fid": "mp1",
                "reply": children[0]["id"],
                **users,
                **{f"task_{k}": v for k, v in tasks.items()},
            },
        )


def _request(method: str, path: str, ids: dict[str, str]) -> dict[str, Any]:
    """What a well-formed request for this OA operation looks like here."""
    values = {
        "message_id": ids["root_fid"] if "frontend_messages" in path else ids["root"],
        "user_id": ids["u1"],
        "auth_method": "local",
        "username": "u1",
        "time_frame": "week",
        "name": "human_messages_by_lang",
        "task_id": ids["task_ack"],
    }
    special: dict[tuple[str, str], dict[str, Any]] = {
        ("post", "/api/v1/tasks/"): {"json": {"type": "random", "user": who(3)}},
        ("post", "/api/v1/tasks/availability"): {"json": U},
        ("post", "/api/v1/tasks/{task_id}/ack"): {"json": {"message_id": "acked"}},
        ("post", "/api/v1/tasks/{task_id}/nack"): {
            "json": {"reason": "skip"},
            "values": {"task_id": ids["task_nack"]},
            "headers": {"x-oasst-user": "local:u6"},
        },
        ("post", "/api/v1/tasks/interaction"): {
            "json": {
                "type": "text_reply_to_message",
                "message_id": "inter",
                "user_message_id": "minter",
                "text": "Tell me about the Moon.",
                "user": who(7),
            }
        },
        ("post", "/api/v1/tasks/close"): {"json": {"message_id": "inter"}, "ok": {400}},
        ("post", "/api/v1/text_labels/"): {
            "json": {
                "type": "text_labels",
                "message_id": ids["reply"],
                "labels": {"spam": 0},
                "user": who(5),
            }
        },
        ("post", "/api/v1/messages/{message_id}/emoji"): {
            "json": {"user": who(3), "op": "add", "emoji": "+1"}
        },
        ("put", "/api/v1/messages/{message_id}/tree/state"): {"params": {"halt": "true"}},
        ("put", "/api/v1/users/{user_id}"): {"params": {"notes": "checked"}},
        ("delete", "/api/v1/users/{user_id}"): {"values": {"user_id": ids["u9"]}},
        ("delete", "/api/v1/users/{user_id}/messages"): {"values": {"user_id": ids["u8"]}},
        ("delete", "/api/v1/frontend_users/{auth_method}/{username}/messages"): {
            "values": {"username": "u8"}
        },
        ("delete", "/api/v1/messages/{message_id}"): {"values": {"message_id": ids["reply"]}},
        ("post", "/api/v1/frontend_users/"): {"json": who(7)},
        ("post", "/api/v1/admin/api_client"): {
            "json": {"description": "contract", "frontend_type": "tests"},
            "headers": {"Authorization": f"Bearer {ROOT}"},
        },
        ("get", "/api/v1/hf/text_toxicity"): {"params": {"msg": "hello"}, "ok": {400}},
        ("get", "/api/v1/auth/check"): {"ok": {403}},
        ("get", "/api/v1/admin/flagged_messages"): {"params": {"max_count": "10"}},
    }
    spec = special.get((method, path), {})
    values.update(spec.get("values", {}))
    url = re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], path)
    return {"url": url, **spec}


def _order(op: tuple[str, str, dict[str, Any]]) -> tuple[int, str]:
    method, path, _ = op
    if "tree/state" in path and method == "put":
        return 3, path  # halts the tree
    return {"get": 0, "post": 1, "put": 2, "delete": 4}[method], path


@pytest.mark.anyio
async def test_every_answer_validates_against_oa_schemas(world: tuple[Env, dict[str, str]]):
    env, ids = world
    doc = oa_doc()
    check = validator(doc)
    problems = []
    for method, path, op in sorted(operations(doc), key=_order):
        req = _request(method, path, ids)
        r = await env.client.request(
            method.upper(),
            req["url"],
            json=req.get("json"),
            params=req.get("params"),
            headers={**env.h, **req.get("headers", {})},
        )
        status = str(r.status_code)
        documented = op["responses"].get(status)
        name = f"{method.upper()} {path} -> {status}"
        if r.status_code >= 400 and r.status_code not in req.get("ok", ()):
            problems.append(f"{name}: {r.text[:200]}")
            continue
        if not r.content or "json" not in r.headers.get("content-type", ""):
            continue
        schema = (documented or {}).get("content", {}).get("application/json", {}).get("schema")
        if documented is None:
            schema = ERROR
        for error in check(schema or {}, r.json()):
            problems.append(f"{name}: {error}")
    assert not problems, "\n".join(problems)

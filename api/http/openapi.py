"""The OpenAPI 3 document, generated from the endpoint declarations and msgspec schemas,
and a plain /docs page listing it (no CDN assets: the server may run offline)."""

from __future__ import annotations

import html
from typing import Any

import msgspec
from starlette.responses import HTMLResponse, Response

from api.http import schemas as s
from api.http.auth import AUTH_METHODS
from api.http.errors import json_response
from api.http.params import path_schema, query_schema
from api.http.routing import Api, Call, Endpoint

REF = "#/components/schemas/{name}"
# What any operation may answer (api.http.errors, domain.model.errors): documented on every
# operation so a client (and schemathesis' status_code_conformance) knows them all.
_ERRORS = {
    "400": "a rule of the protocol refused the request (OA's error_code)",
    "403": "API key missing, unknown, not trusted or sent in the URL (error_code 2); "
    "or the user is deleted or disabled",
    "404": "unknown id (or another client's, for an untrusted client)",
    "409": "conflicts with what was recorded (a task answered otherwise, an edited message)",
    "422": "invalid body or parameter (a name with control characters, a NUL, ...)",
    "429": "too many requests; try again after Retry-After seconds",
    "500": "internal error (error_code 0)",
    "503": "not available now (no task of that type; read models not ready)",
    "507": "the server's storage is full: nothing was recorded, try again later",
}
_BODY_ERRORS = {  # operations that read a body (POST, PUT)
    "413": "body too large",
}
_JSON_BODY_ERRORS = {"415": "the body is not application/json"}


def build(endpoints: list[Endpoint]) -> dict[str, Any]:
    types: list[Any] = [s.Error]
    for e in endpoints:
        types += [t for t in (e.body, e.response) if t is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = dict(zip(map(id, types), schemas))
    error_ref = schema_of[id(s.Error)]
    paths: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for e in endpoints:
        operation = f"{e.method.lower()}_{e.handler.__name__}"
        if operation in seen:  # one handler behind two paths (messages, frontend_messages)
            operation += "_" + "_".join(p.strip("{}") for p in e.path.split("/")[3:4])
        seen.add(operation)
        op: dict[str, Any] = {"summary": e.summary, "operationId": operation}
        if e.tag:
            op["tags"] = [e.tag]
        params = _parameters(e)
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema_of[id(e.body)]}},
            }
        op["responses"] = _responses(e, schema_of, error_ref)
        if e.access == "root":
            op["security"] = [{"RootToken": []}]
        elif e.access != "public":
            op["security"] = [{"ApiKey": []}]
            op["x-access"] = e.access
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "DataEngine",
            "version": "1",
            "description": "Open-Assistant's v1 task protocol on an event-sourced store.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "RootToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _parameters(e: Endpoint) -> list[dict[str, Any]]:
    params = [
        {"name": n, "in": "path", "required": True, "schema": path_schema(n)}
        for n in _path_params(e.path)
    ]
    params += [
        {
            "name": n,
            "in": "query",
            "required": d == "required" or d.endswith("(required)"),
            "description": d,
            "schema": query_schema(e.path, n),
        }
        for n, d in e.query.items()
    ]
    if e.access not in ("public", "root"):
        params.append(
            {
                "name": "x-oasst-user",
                "in": "header",
                "required": False,
                "description": "<auth_method>:<id> of the end user",
                "schema": {
                    "type": "string",
                    # header values are printable ASCII; the username 1..128 characters
                    "pattern": f"^({'|'.join(AUTH_METHODS)}):[!-~][ -~]*$",
                    "maxLength": len("discord:") + 128,
                },
            }
        )
    return params


def _responses(e: Endpoint, schema_of: dict[int, Any], error_ref: Any) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "success"}
    if e.response is not None and e.status != 204:
        ok["content"] = {"application/json": {"schema": schema_of[id(e.response)]}}
    responses = {str(e.status): ok}
    errors = dict(_ERRORS)
    if e.method in ("POST", "PUT"):
        errors |= _BODY_ERRORS
    if e.body is not None:
        errors |= _JSON_BODY_ERRORS
    for status, text in sorted({**errors, **e.errors}.items()):
        responses[status] = {
            "description": text,
            "content": {"application/json": {"schema": error_ref}},
        }
        if status == "429":
            responses[status]["headers"] = {
                "Retry-After": {
                    "description": "seconds until the request would be admitted",
                    "schema": {"type": "integer"},
                }
            }
    return responses


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _page(doc: dict[str, Any]) -> str:
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            access = "public" if "security" not in op else op.get("x-access", "root")
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>"
                f"{html.escape(path)}</code></td><td>{access}</td><td>"
                f"{html.escape(op.get('summary', ''))}</td></tr>"
            )
    schemas = "".join(
        f"<li><code>{html.escape(name)}</code></li>"
        for name in sorted(doc["components"]["schemas"])
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>DataEngine API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 8px}"
        "tr:nth-child(even){background:#f4f4f4}</style></head><body>"
        "<h1>DataEngine API</h1><p>The machine-readable document is "
        "<a href='/openapi.json'>/openapi.json</a>. Send <code>X-API-Key</code> on every "
        "endpoint not marked public.</p><table><tr><th>method</th><th>path</th>"
        f"<th>access</th><th>summary</th></tr>{''.join(rows)}</table>"
        f"<h2>Schemas</h2><ul>{schemas}</ul></body></html>"
    )


def register(api: Api) -> None:
    cache: dict[str, Any] = {}

    def document() -> dict[str, Any]:
        if "doc" not in cache:
            cache["doc"] = build(api.endpoints)
        return cache["doc"]

    def openapi_json(call: Call) -> Response:
        return json_response(document())

    def docs(call: Call) -> Response:
        return HTMLResponse(_page(document()))

    api.add(
        "GET",
        "/openapi.json",
        openapi_json,
        access="public",
        response=dict,
        summary="this OpenAPI document",
        tag="meta",
    )
    api.add("GET", "/docs", docs, access="public", summary="an HTML listing of the API", tag="meta")

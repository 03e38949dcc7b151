"""The OpenAPI 3.1 document and the offline docs page, built from the route declarations."""

from __future__ import annotations

import html
import json
from typing import Any

import msgspec

from ._errors import ErrorEnvelope, UnsupportedMediaType, error_code_table, mapping_of
from ._routing import Auth, RouteSpec

_REF = "#/components/schemas/{name}"
# What the server accepts in each path parameter (the same rules the routes enforce).
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "phone": {"type": "string", "pattern": r"^\+?[0-9 ().\-]{7,32}$",
              "description": "7 to 15 digits with an optional leading +; spaces, dashes, dots and "
                             "parentheses are ignored."},
    "jid": {"type": "string", "pattern": r"^[0-9-]+@g\.us$", "description": "A group JID.",
            "examples": ["120363041234567890@g.us"]},
}

_SECURITY = {
    Auth.PAT: [{"personalAccessToken": []}, {"bearerPersonalAccessToken": []}],
    Auth.SESSION: [{"sessionKey": []}],
    Auth.EITHER: [{"personalAccessToken": []}, {"sessionKey": []}],
    Auth.NONE: [],
}


def build_openapi(routes: list[RouteSpec], *, version: str, server_url: str) -> dict[str, Any]:
    types: list[Any] = [ErrorEnvelope]
    for r in routes:
        types.extend(t for t in (r.doc_body, r.answer) if t is not None)
    schemas, components = msgspec.json.schema_components(list(dict.fromkeys(types)), ref_template=_REF)
    by_type = dict(zip(dict.fromkeys(types), schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        path = _openapi_path(r.path)
        op: dict[str, Any] = {
            "operationId": r.handler.__name__,
            "summary": r.summary,
            "description": r.description,
            "tags": [r.tag],
            "security": _SECURITY[r.auth],
            "parameters": [
                *({"name": n, "in": "path", "required": True,
                   "schema": PATH_SCHEMAS.get(n, {"type": "string"})} for n in _path_names(r.path)),
                *({"name": p.name, "in": "query", "required": p.required, "description": p.description,
                   "schema": p.schema} for p in r.query),
                *({"name": p.name, "in": "header", "required": p.required, "description": p.description,
                   "schema": p.schema} for p in r.headers),
            ],
            "responses": {},
        }
        if r.doc_body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": by_type[r.doc_body]}}}
        ok: dict[str, Any] = {"description": "Success"}
        if r.answer is not None:
            ok["content"] = {"application/json": {"schema": by_type[r.answer]}}
        for media_type in r.media_answers:
            ok.setdefault("content", {})[media_type] = {"schema": {"type": "string", "format": "binary"}}
        op["responses"][str(r.status)] = ok
        for err in [*r.errors, *([UnsupportedMediaType] if r.doc_body is not None else [])]:
            status, code, description = mapping_of(err)
            op["responses"].setdefault(str(status), {
                "description": f"{code}: {description}",
                "content": {"application/json": {"schema": by_type[ErrorEnvelope]}}})
        paths.setdefault(path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Trio WhatsApp Gateway API",
            "version": version,
            "description": "Send WhatsApp messages, manage sessions, contacts and groups, and receive "
                           "webhooks. Every error answer is the envelope "
                           "`{\"success\": false, \"error\": {\"code\", \"message\", \"details\"}}`.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "personalAccessToken": {"type": "apiKey", "in": "header", "name": "X-API-Token",
                                        "description": "A personal access token (wgp_...)."},
                "bearerPersonalAccessToken": {"type": "http", "scheme": "bearer",
                                              "description": "A personal access token as a bearer token."},
                "sessionKey": {"type": "http", "scheme": "bearer",
                               "description": "A session API key (wgs_...). It reaches only its own session."},
            },
        },
        "x-error-codes": error_code_table(),
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[-1] for part in path.split("/") if part.startswith("<")]


def _openapi_path(path: str) -> str:
    return "/".join("{" + part[1:-1].split(":")[-1] + "}" if part.startswith("<") else part
                    for part in path.split("/"))


def render_docs(doc: dict[str, Any]) -> str:
    """A self-contained HTML page: no scripts, no fonts, nothing fetched."""
    h = html.escape
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        f"<title>{h(doc['info']['title'])}</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;"
        "color:#1b1b1b}code,pre{font:13px ui-monospace,monospace}pre{background:#f4f4f4;padding:.8em;"
        "overflow:auto}.m{display:inline-block;min-width:4.5em;font-weight:700}.op{border-top:1px solid #ddd;"
        "padding:.6em 0}details summary{cursor:pointer}table{border-collapse:collapse}td,th{padding:.2em .8em;"
        "border-bottom:1px solid #eee;text-align:left}</style>",
        f"<h1>{h(doc['info']['title'])} <small>{h(doc['info']['version'])}</small></h1>",
        f"<p>{h(doc['info']['description'])}</p>",
        "<p>Machine-readable: <a href=/api/v1/openapi.json>/api/v1/openapi.json</a> (OpenAPI 3.1).</p>",
        "<h2>Authentication</h2><ul>",
    ]
    for name, scheme in doc["components"]["securitySchemes"].items():
        where = scheme.get("name") or "Authorization: Bearer"
        parts.append(f"<li><b>{h(name)}</b> ({h(where)}): {h(scheme['description'])}</li>")
    parts.append("</ul><h2>Endpoints</h2>")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            auth = ", ".join(next(iter(s)) for s in op["security"]) or "none"
            parts.append(f"<div class=op id={h(op['operationId'])}><span class=m>{method.upper()}</span>"
                         f"<code>{h(path)}</code> — {h(op['summary'])}<br><small>auth: {h(auth)}</small>")
            if op["description"]:
                parts.append(f"<p>{h(op['description'])}</p>")
            body = op.get("requestBody")
            if body:
                schema = body["content"]["application/json"]["schema"]
                parts.append("<details><summary>Request body</summary><pre>"
                             + h(json.dumps(_resolve(schema, doc), indent=2)) + "</pre></details>")
            for status, resp in op["responses"].items():
                content = resp.get("content")
                if content and status.startswith("2"):
                    schema = content["application/json"]["schema"]
                    parts.append(f"<details><summary>{status} answer</summary><pre>"
                                 + h(json.dumps(_resolve(schema, doc), indent=2)) + "</pre></details>")
            codes = ", ".join(f"{s}" for s in op["responses"] if not s.startswith("2"))
            if codes:
                parts.append(f"<small>errors: {h(codes)}</small>")
            parts.append("</div>")
    parts.append("<h2>Error codes</h2><table><tr><th>Code<th>HTTP<th>Meaning")
    for e in doc["x-error-codes"]:
        parts.append(f"<tr><td><code>{h(e['code'])}</code><td>{e['status']}<td>{h(e['description'])}")
    parts.append("</table></html>")
    return "".join(parts)


def _resolve(schema: Any, doc: dict[str, Any], depth: int = 0) -> Any:
    if depth > 6:
        return schema
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            return _resolve(doc["components"]["schemas"][ref.rsplit("/", 1)[1]], doc, depth + 1)
        return {k: _resolve(v, doc, depth + 1) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolve(v, doc, depth + 1) for v in schema]
    return schema

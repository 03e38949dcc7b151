"""The /docs page: the OpenAPI document as one readable, self-contained HTML page.

No scripts, fonts or styles are fetched, so it works offline and under a strict
Content-Security-Policy. Descriptions are rendered from their Markdown (inline
code, bold, links, paragraphs and lists: what the route docstrings use), every
request example is shown, and schemas are folded away in `<details>` until
opened.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any, Final

DOCS_STYLE: Final = (
    ":root{--fg:#1b1b1b;--muted:#5b5b5b;--line:#e3e3e3;--code:#f5f5f4;--accent:#0b6e4f}"
    "*{box-sizing:border-box}body{margin:0;font:15px/1.55 system-ui,-apple-system,'Segoe UI',sans-serif;"
    "color:var(--fg);background:#fff}a{color:var(--accent)}code,pre{font:13px/1.45 ui-monospace,Menlo,"
    "Consolas,monospace}code{background:var(--code);padding:.05em .3em;border-radius:3px}"
    "pre{background:var(--code);padding:.7em .9em;border-radius:6px;overflow:auto;margin:.4em 0}"
    "pre code{background:none;padding:0}.layout{display:flex;align-items:flex-start}"
    "nav{position:sticky;top:0;flex:0 0 250px;max-height:100vh;overflow:auto;padding:1.2em 1em;"
    "border-right:1px solid var(--line);font-size:14px}nav h2{font-size:12px;text-transform:uppercase;"
    "letter-spacing:.06em;color:var(--muted);margin:1.2em 0 .3em}nav ul{list-style:none;margin:0;padding:0}"
    "nav li{margin:.15em 0}nav a{text-decoration:none;color:var(--fg)}nav a:hover,nav a:focus{color:var(--accent);"
    "text-decoration:underline}main{flex:1;min-width:0;max-width:980px;padding:1.2em 2em 4em}"
    "h1{margin:.2em 0}h1 small{font-size:.5em;color:var(--muted);font-weight:400}h2{margin-top:2em;"
    "border-bottom:1px solid var(--line);padding-bottom:.2em}h3{margin:.2em 0;font-size:1.05em;"
    "display:flex;gap:.6em;align-items:baseline;flex-wrap:wrap}h4{margin:1em 0 .3em;font-size:.95em}"
    ".op{border:1px solid var(--line);border-radius:8px;padding:.9em 1.1em;margin:1em 0}"
    ".m{display:inline-block;min-width:4.2em;text-align:center;border-radius:4px;padding:.05em .4em;"
    "font:700 12px/1.6 ui-monospace,monospace;color:#fff;background:#555}.m.get{background:#1f6feb}"
    ".m.post{background:#1a7f37}.m.put{background:#9a6700}.m.delete{background:#cf222e}"
    ".auth{color:var(--muted);font-size:13px;margin:.3em 0}table{border-collapse:collapse;width:100%;"
    "font-size:14px}td,th{padding:.3em .6em;border-bottom:1px solid var(--line);text-align:left;"
    "vertical-align:top}th{font-weight:600}details{margin:.3em 0}summary{cursor:pointer;font-weight:500}"
    "summary:focus-visible,a:focus-visible{outline:2px solid var(--accent);outline-offset:2px}"
    "td code,h3 code{overflow-wrap:anywhere}"
    "@media (max-width:760px){.layout{display:block}nav{position:static;max-height:none;"
    "border-right:0;border-bottom:1px solid var(--line)}nav ul{columns:2;column-gap:1em}nav li{break-inside:avoid}"
    "main{padding:1em}.op{padding:.7em}table{display:block;overflow-x:auto}}"
)
_SCHEME_NAMES: Final = {"personalAccessToken": "personal access token (X-API-Token)",
                        "bearerPersonalAccessToken": "personal access token (Bearer)",
                        "sessionKey": "session key (Bearer)"}


def render_docs(doc: dict[str, Any]) -> str:
    h = html.escape
    info = doc["info"]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            by_tag.setdefault(op["tags"][0], []).append((method, path, op))
    nav = ["<nav aria-label=Contents><h2>Overview</h2><ul><li><a href=#authentication>Authentication</a>"
           "<li><a href=#errors>Error codes</a></ul>"]
    body = [f"<h1>{h(info['title'])} <small>{h(info['version'])}</small></h1>", markdown(info["description"]),
            "<p>Machine-readable: <a href=/api/v1/openapi.json>/api/v1/openapi.json</a> (OpenAPI 3.1).</p>",
            "<h2 id=authentication>Authentication</h2><ul>"]
    for name, scheme in doc["components"]["securitySchemes"].items():
        body.append(f"<li><b>{h(_SCHEME_NAMES.get(name, name))}</b>: {markdown_inline(scheme['description'])}")
    body.append("</ul>")
    for tag, ops in by_tag.items():
        anchor = "tag-" + _slug(tag)
        nav.append(f"<h2>{h(tag)}</h2><ul>")
        body.append(f"<h2 id={anchor}>{h(tag)}</h2>")
        for method, path, op in ops:
            nav.append(f"<li><a href=#{h(op['operationId'])}>{h(op['summary'])}</a>")
            body.append(_operation(method, path, op, doc))
        nav.append("</ul>")
    nav.append("</nav>")
    body.append("<h2 id=errors>Error codes</h2><p>Every error answer is the envelope "
                "<code>{\"success\": false, \"error\": {\"code\", \"message\", \"details\"}}</code>.</p>"
                "<table><thead><tr><th>Code<th>HTTP<th>Meaning</thead><tbody>")
    for e in doc["x-error-codes"]:
        body.append(f"<tr><td><code>{h(e['code'])}</code><td>{e['status']}<td>{h(e['description'])}")
    body.append("</tbody></table>")
    return "".join([
        "<!doctype html><html lang=en><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>{h(info['title'])}</title><style>{DOCS_STYLE}</style>",
        "<div class=layout>", *nav, "<main>", *body, "</main></div></html>"])


def _operation(method: str, path: str, op: dict[str, Any], doc: dict[str, Any]) -> str:
    h = html.escape
    auth = " or ".join(_SCHEME_NAMES.get(next(iter(s)), next(iter(s))) for s in op["security"]) or "none"
    out = [f"<article class=op id={h(op['operationId'])} aria-labelledby={h(op['operationId'])}-h>",
           f"<h3 id={h(op['operationId'])}-h><span class='m {method}'>{method.upper()}</span>"
           f"<code>{h(path)}</code> <span>{h(op['summary'])}</span></h3>",
           f"<p class=auth>Auth: {h(auth)}</p>"]
    if op["description"]:
        out.append(markdown(op["description"]))
    if op["parameters"]:
        out.append("<h4>Parameters</h4><table><thead><tr><th>Name<th>In<th>Rule<th>Meaning</thead><tbody>")
        for p in op["parameters"]:
            schema = p.get("schema", {})
            rule = schema.get("pattern") or schema.get("type", "")
            if "minimum" in schema:
                rule = f"{rule} {schema['minimum']}–{schema.get('maximum', '')}"
            required = "" if p.get("required") else " (optional)"
            out.append(f"<tr><td><code>{h(p['name'])}</code>{required}<td>{h(p['in'])}<td><code>{h(str(rule))}"
                       f"</code><td>{markdown_inline(p.get('description') or schema.get('description', ''))}")
        out.append("</tbody></table>")
    body = op.get("requestBody")
    if body:
        media = body["content"]["application/json"]
        examples = media.get("examples", {})
        if examples:
            out.append("<h4>Request examples</h4>")
            for i, example in enumerate(examples.values()):
                out.append(f"<details{' open' if i == 0 else ''}><summary>{h(example['summary'])}</summary>"
                           f"<pre><code>{h(json.dumps(example['value'], indent=2, ensure_ascii=False))}"
                           "</code></pre></details>")
        out.append("<details><summary>Request body schema</summary><pre><code>"
                   + h(json.dumps(_resolve(media["schema"], doc), indent=2)) + "</code></pre></details>")
    out.append("<h4>Answers</h4><table><tbody>")
    for status, resp in sorted(op["responses"].items(), key=lambda item: item[0]):
        out.append(f"<tr><td><code>{h(status)}</code><td>{h(resp['description'])}")
        content = resp.get("content", {})
        if status.startswith("2") and "application/json" in content:
            out.append("<details><summary>Schema</summary><pre><code>"
                       + h(json.dumps(_resolve(content["application/json"]["schema"], doc), indent=2))
                       + "</code></pre></details>")
        others = [t for t in content if t != "application/json"]
        if others:
            out.append(f" <small>({h(', '.join(others))})</small>")
    out.append("</tbody></table></article>")
    return "".join(out)


_CODE: Final = re.compile(r"`([^`]+)`")
_BOLD: Final = re.compile(r"\*\*(.+?)\*\*")
_LINK: Final = re.compile(r"\[([^\]]+)\]\(((?:https?://|/)[^)\s]*)\)")


def markdown_inline(text: str) -> str:
    """Inline Markdown to HTML: `code`, **bold** and [links](http…); everything else escaped."""
    parts = _CODE.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            escaped = html.escape(part, quote=False)
            escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
            out.append(_LINK.sub(lambda m: f"<a href=\"{html.escape(m[2])}\">{m[1]}</a>", escaped))
    return "".join(out)


def markdown(text: str) -> str:
    """Block Markdown: paragraphs (blank-line separated) and `- ` lists, each with inline Markdown."""
    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if lines and all(line.startswith(("- ", "* ")) for line in lines):
            items = "".join(f"<li>{markdown_inline(line[2:])}" for line in lines)
            blocks.append(f"<ul>{items}</ul>")
        elif lines:
            blocks.append(f"<p>{markdown_inline(' '.join(lines))}</p>")
    return "".join(blocks)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _resolve(schema: Any, doc: dict[str, Any], depth: int = 0) -> Any:
    """`schema` with its `$ref`s replaced by what they name (a few levels deep), for reading."""
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

"""An app's route table, flattened: every ``(method, path template)`` it answers.

FastAPI 0.165 keeps included routers as lazy branches of ``app.routes``;
``fastapi.routing.iter_route_contexts`` walks them, the way its OpenAPI generator does.
Routes left out of the schema (the page, ``/metrics``, ``/internal/*``) are listed too.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

#: What ``HEAD`` adds to a ``GET`` route (Starlette answers it for every GET).
_IMPLIED = frozenset({"HEAD"})


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """Every ``(method, path)`` of ``app``'s routes, sorted; mounts (no methods) are left out."""
    table: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        if route.path is None or not route.methods:
            continue
        for method in set(route.methods) - _IMPLIED:
            table.add((method, route.path))
    return sorted(table)


def concrete(path: str, value: str = "x") -> str:
    """``path`` with each ``{param}`` (or ``{param:converter}``) replaced by ``value``."""
    out, rest = "", path
    while "{" in rest:
        head, _, tail = rest.partition("{")
        _, _, rest = tail.partition("}")
        out += head + value
    return out + rest

"""A fake Qdrant server at the transport (``httpx.MockTransport``): no Qdrant server runs
here, so the server back-end's HTTP path is exercised against just enough of its REST API."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx


def ok(result: Any) -> httpx.Response:
    return httpx.Response(200, json={"result": result, "status": "ok", "time": 0.0})


def error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"status": {"error": message}, "time": 0.0})


@dataclass
class FakeQdrant:
    """Just enough of Qdrant's REST API; records every request.

    Aliases as Qdrant keeps them: created and deleted in one ``POST /collections/aliases``
    call (all its actions or none), refused under a collection's name or towards a missing
    collection, resolved by every call on a collection, deleted with their collection. A
    search answers one point per query from a collection holding points, whose payload
    names the collection that answered (``{"answered_by": name}``)."""

    collections: dict[str, int] = field(default_factory=dict)  # name -> points
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> collection
    requests: list[httpx.Request] = field(default_factory=list)
    fail_with: int | None = None
    create_conflicts: bool = False  # "another process created it first"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_with is not None:
            return error(self.fail_with, "service unavailable")
        parts = request.url.path.strip("/").split("/")
        if parts == ["collections"]:
            return ok({"collections": [{"name": n} for n in self.collections]})
        if parts == ["aliases"]:
            return ok(
                {
                    "aliases": [
                        {"alias_name": a, "collection_name": c} for a, c in self.aliases.items()
                    ]
                }
            )
        if parts == ["collections", "aliases"] and request.method == "POST":
            return self._change_aliases(json.loads(request.content)["actions"])
        name = parts[1]
        rest = parts[2:]
        if rest == ["exists"]:
            return ok({"exists": name in self.collections})
        if rest == [] and request.method == "DELETE":
            # Qdrant answers a missing collection with ``false``, not a 404.
            self.aliases = {a: c for a, c in self.aliases.items() if c != name}
            return ok(self.collections.pop(name, None) is not None)
        if rest == [] and request.method == "PUT":
            if name in self.aliases:
                return error(409, f"Wrong input: Alias `{name}` already exists!")
            if name in self.collections or self.create_conflicts:
                self.collections.setdefault(name, 0)
                return error(409, f"Wrong input: Collection `{name}` already exists!")
            self.collections[name] = 0
            return ok(True)
        name = self.aliases.get(name, name)
        if name not in self.collections:
            return error(404, f"Not found: Collection `{name}` doesn't exist!")
        body = json.loads(request.content or b"{}")
        if rest == ["index"]:
            return ok({"operation_id": 1, "status": "completed"})
        if rest == ["points"] and request.method == "PUT":
            self.collections[name] += len(body["points"])
            return ok({"operation_id": 2, "status": "completed"})
        if rest == ["points"] and request.method == "POST":
            return ok([])  # retrieve: the fake keeps no points, only their number
        if rest == ["points", "count"]:
            return ok({"count": self.collections[name]})
        if rest == ["points", "query", "batch"]:
            answer = {
                "id": "00000000-0000-4000-8000-000000000000",
                "version": 0,
                "score": 1.0,
                "payload": {"answered_by": name},
            }
            points = [answer] if self.collections[name] else []
            return ok([{"points": points} for _ in body["searches"]])
        return error(400, f"fake Qdrant does not know {request.method} {request.url.path}")

    def _change_aliases(self, actions: list[dict[str, Any]]) -> httpx.Response:
        aliases = dict(self.aliases)
        for action in actions:
            if "delete_alias" in action:
                alias = action["delete_alias"]["alias_name"]
                if aliases.pop(alias, None) is None:
                    return error(404, f"Not found: Alias {alias} does not exists!")
            else:
                create = action["create_alias"]
                alias, target = create["alias_name"], create["collection_name"]
                if alias in self.collections:
                    return error(409, f"Wrong input: Collection `{alias}` already exists!")
                if target not in self.collections:
                    return error(404, f"Not found: Collection `{target}` doesn't exist!")
                aliases[alias] = target
        self.aliases = aliases
        return ok(True)

    def bodies(self, method: str, path: str) -> list[dict[str, Any]]:
        return [
            json.loads(r.content)
            for r in self.requests
            if r.method == method and r.url.path == path
        ]

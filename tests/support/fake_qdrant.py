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
    """Just enough of Qdrant's REST API; records every request."""

    collections: dict[str, int] = field(default_factory=dict)  # name -> points
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
        name = parts[1]
        rest = parts[2:]
        if rest == ["exists"]:
            return ok({"exists": name in self.collections})
        if rest == [] and request.method == "DELETE":
            # Qdrant answers a missing collection with ``false``, not a 404.
            return ok(self.collections.pop(name, None) is not None)
        if rest == [] and request.method == "PUT":
            if name in self.collections or self.create_conflicts:
                self.collections.setdefault(name, 0)
                return error(409, f"Wrong input: Collection `{name}` already exists!")
            self.collections[name] = 0
            return ok(True)
        if name not in self.collections:
            return error(404, f"Not found: Collection `{name}` doesn't exist!")
        body = json.loads(request.content or b"{}")
        if rest == ["index"]:
            return ok({"operation_id": 1, "status": "completed"})
        if rest == ["points"] and request.method == "PUT":
            self.collections[name] += len(body["points"])
            return ok({"operation_id": 2, "status": "completed"})
        if rest == ["points", "count"]:
            return ok({"count": self.collections[name]})
        if rest == ["points", "query", "batch"]:
            return ok([{"points": []} for _ in body["searches"]])
        return error(400, f"fake Qdrant does not know {request.method} {request.url.path}")

    def bodies(self, method: str, path: str) -> list[dict[str, Any]]:
        return [
            json.loads(r.content)
            for r in self.requests
            if r.method == method and r.url.path == path
        ]

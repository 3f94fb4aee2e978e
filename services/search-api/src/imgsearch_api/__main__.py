"""``python -m imgsearch_api`` / ``imgsearch-api``: serve the search API.

One app on two listeners of API_HOST: API_PORT (the public API and the page) and
INTERNAL_PORT (the workers' hand-off, ``/internal/*``; never publish it). The app tells them
apart by the port a request came in on (``security.InternalListener``). Settings that cannot
be parsed, or a public address without API_KEY, stop it with a message and exit status 2.
"""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from .app import create_app
from .security import exposure_problem
from .settings import ApiSettings

log = logging.getLogger("imgsearch_api")


def _invalid(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ())).upper() or "settings"
        # Not the value: it may be a secret (a password in REDIS_URL).
        lines.append(f"  {where}: {error.get('msg', 'invalid')}")
    return "\n".join(lines)


def main() -> int:
    try:
        settings = ApiSettings()
    except ValidationError as exc:
        sys.stderr.write(f"error: the search API's settings are invalid:\n{_invalid(exc)}\n")
        return 2
    problem = exposure_problem(settings)
    if problem is not None:
        sys.stderr.write(f"error: {problem}\n")
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(settings)
    level = settings.log_level.lower()
    # One process owns the embedded index; scale the API out only with QDRANT_URL.
    public = uvicorn.Config(
        app, host=settings.api_host, port=settings.api_port, log_level=level, workers=1
    )
    internal = uvicorn.Config(
        app, host=settings.api_host, port=settings.internal_port, log_level=level
    )
    # bind_socket logs the address, or the error and exits (status 1) when it is taken.
    sockets = [public.bind_socket(), internal.bind_socket()]
    log.info("internal hand-off on port %d: never publish it", settings.internal_port)
    uvicorn.Server(public).run(sockets=sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main())

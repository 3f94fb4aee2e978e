"""Hands vectors to the index owner (the search API) over its internal endpoint.

The embedded Qdrant Edge shard can be opened by one process only, so workers
never open it: they POST their points to ``/internal/v1/upsert`` with the
internal token; a file whose content is indexed already is only attached to its
image (``/internal/v1/attach``). Errors are translated to our hierarchy: anything
but a clean 2xx is transient (the API may be restarting) except a 4xx, which is a
bug or a bad token and is reported as such.
"""

from __future__ import annotations

import httpx

from imgsearch_common.auth import internal_client
from imgsearch_common.catalog import ModelMismatch
from imgsearch_common.errors import ImgSearchError, UpstreamUnavailable
from imgsearch_common.payloads import AttachAnswer, AttachRequest, FileRecord, UpsertRequest


class IndexClient:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = internal_client(base_url, token, timeout_s=timeout_s, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def probe(self) -> None:
        """A cheap call the index owner answers while it is up (its ``/health``): the
        worker's circuit breaker asks it before it sends jobs again."""
        try:
            response = await self._client.get("/health")
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"index owner unreachable ({type(exc).__name__})") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise UpstreamUnavailable(f"index owner answered {response.status_code}")

    async def upsert(self, request: UpsertRequest) -> None:
        await self._post("/internal/v1/upsert", request.model_dump_json(exclude_none=True))

    async def attach(self, collection: str, image_id: str, record: FileRecord) -> bool:
        """Add ``record`` to the indexed image ``image_id``; False: no such image (or an
        index owner from before ``/attach``, which answers 404: index the file in full)."""
        body = AttachRequest(collection=collection, image_id=image_id, file=record)
        response = await self._post("/internal/v1/attach", body.model_dump_json(), absent=404)
        if response is None:
            return False
        try:
            return AttachAnswer.model_validate_json(response.content).attached
        except ValueError as exc:
            raise UpstreamUnavailable("index owner's answer to attach is unreadable") from exc

    async def _post(self, path: str, body: str, absent: int | None = None) -> httpx.Response | None:
        """The answer to a POST of ``body``; None when its status is ``absent``."""
        try:
            response = await self._client.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"index owner unreachable ({type(exc).__name__})") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise UpstreamUnavailable(f"index owner answered {response.status_code}")
        if response.status_code == absent:
            return None
        if response.status_code == ModelMismatch.status_code:
            message = _message(response) or "the collection holds another model's vectors"
            raise ModelMismatch(message)
        if response.status_code >= 400:
            raise ImgSearchError(f"index owner refused the request ({response.status_code})")
        return response


def _message(response: httpx.Response) -> str:
    """The message of an error answer in our shape; "" for any other body."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return message[:1000] if isinstance(message, str) else ""

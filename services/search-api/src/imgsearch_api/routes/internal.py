"""Internal hand-off: workers write vectors into the index this process owns, or add a
file to an image it holds already (``/attach``: the file's content is indexed).

Never open without the internal token (see ``security.require_internal_token``). The
order of the writes is ``imgsearch_common.vectorstore.writes``'s.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from imgsearch_common.payloads import AttachAnswer, AttachRequest, UpsertRequest
from imgsearch_common.vectorstore.writes import attach_file, write_images

from ..security import require_internal_token
from ..state import AppState, get_state

router = APIRouter(
    prefix="/internal/v1",
    tags=["internal"],
    dependencies=[Depends(require_internal_token)],
    include_in_schema=False,
)


@router.post("/upsert")
async def upsert(
    state: Annotated[AppState, Depends(get_state)], body: UpsertRequest
) -> dict[str, int]:
    full, windows = await write_images(state.store, body)
    for kind, count in (("window", windows), ("full", full)):
        if count:
            state.metrics.upserted.labels(kind).inc(count)
    return {"full": full, "windows": windows}


@router.post("/attach")
async def attach(
    state: Annotated[AppState, Depends(get_state)], body: AttachRequest
) -> AttachAnswer:
    """One more file of an indexed image (its content hash is indexed): no encoding."""
    attached = await attach_file(state.store, body.collection, body.image_id, body.file)
    return AttachAnswer(attached=attached)

"""Internal hand-off: workers write vectors into the index this process owns.

Never open without the internal token (see ``security.require_internal_token``).
Windows are written before the full-image point, so an image that is findable
by its full vector already has its windows.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from imgsearch_common.ids import validate_collection
from imgsearch_common.schemas import UpsertRequest
from imgsearch_common.vectorstore.base import PointRecord

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
    collection = validate_collection(body.collection)
    windows = [PointRecord(p.id, p.vector, dict(p.payload)) for p in body.windows]
    full = [PointRecord(p.id, p.vector, dict(p.payload)) for p in body.full]
    if windows:
        await state.store.upsert(collection, "window", windows)
        state.metrics.upserted.labels("window").inc(len(windows))
    if full:
        await state.store.upsert(collection, "full", full)
        state.metrics.upserted.labels("full").inc(len(full))
    return {"full": len(full), "windows": len(windows)}

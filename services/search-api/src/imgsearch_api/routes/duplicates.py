"""``GET /api/duplicates``: copies in the index, in tiers (``imgsearch_api.duplicates``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from imgsearch_common.ids import DEFAULT_COLLECTION
from imgsearch_common.schemas import (
    DUPLICATE_TIERS,
    MAX_DUPLICATE_GROUPS,
    DuplicatesResponse,
    DuplicateTier,
)

from ..state import AppState, get_state
from . import openapi

router = APIRouter(prefix="/api", tags=["duplicates"])
State = Annotated[AppState, Depends(get_state)]


@router.get("/duplicates", response_model=DuplicatesResponse, responses=openapi.DUPLICATES)
async def duplicates(
    state: State,
    collection: Annotated[str, Query()] = DEFAULT_COLLECTION,
    tier: Annotated[
        DuplicateTier | None, Query(description="one tier (default: every tier)")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_DUPLICATE_GROUPS, description="most groups per tier")
    ] = 100,
) -> DuplicatesResponse:
    tiers = [tier] if tier is not None else list(DUPLICATE_TIERS)
    return await state.duplicates.find(collection, tiers, limit)

"""Long-lived resources of the search API, owned by the app's lifespan."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import Request
from redis.asyncio import Redis

from imgsearch_common.encoder_client import EncoderClient
from imgsearch_common.jobs import JobQueue
from imgsearch_common.vectorstore.base import VectorStore

from .duplicates import DuplicatesService
from .files import IndexedFiles
from .indexing import IndexingService
from .metrics import ApiMetrics
from .reindex import Reindexer
from .search import SearchService
from .settings import ApiSettings
from .text_removal import TextRemover
from .url_fetch import SafeFetcher


@dataclass
class AppState:
    settings: ApiSettings
    redis: Redis
    queue: JobQueue
    store: VectorStore
    encoder: EncoderClient
    fetcher: SafeFetcher
    text_remover: TextRemover
    pool: ThreadPoolExecutor
    #: What may be served and re-scored from disk (the one rule, ``files.py``).
    files: IndexedFiles
    search: SearchService
    indexing: IndexingService
    metrics: ApiMetrics
    #: ``GET /api/duplicates`` (its own thread and admission).
    duplicates: DuplicatesService
    #: Collections being moved to a new physical collection (``reindex.py``).
    reindexer: Reindexer


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.resources
    return state

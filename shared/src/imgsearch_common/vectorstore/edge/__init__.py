"""Qdrant Edge back-end: embedded shards on local disk, owned by one process.

Layout under ``root`` (``DATA_DIR/index``)::

    .lock                       advisory lock (flock): one process opens the index
    aliases.json                logical name -> the revision it reads (``NAME.rN``)
    <collection>/full/          one EdgeShard: image points
    <collection>/window/        one EdgeShard: window points (payload index on parent_id)
    <collection>/record.json    the collection's record (the model that filled it)

``<collection>`` is a plain ``NAME`` or a reindex's revision ``NAME.rN``.

One job per module; each docstring holds the measured facts of qdrant-edge-py 0.9.0 that
shaped it:

- :mod:`.store` — :class:`EdgeVectorStore`, the interface on shards, and their registry;
- :mod:`.lock` — the index lock and :class:`StoreLocked` (why Edge must never open a
  shard twice);
- :mod:`.calls` — the one thread every Edge call runs on (every call holds the GIL),
  refusing calls once closing, translating Edge's errors;
- :mod:`.shards` — a shard's state, the configuration new shards get, opening one;
- :mod:`.names` — the alias file and the collections' records, written atomically;
- :mod:`.optimizer` — when and how a shard's HNSW index is built: in a child process on a
  copy, swapped in with the writes made meanwhile, recovered after a crash.
- :mod:`.flusher` — when acknowledged writes reach the disk: what a process death and a
  power loss can cost (the durability promise).
"""

from __future__ import annotations

from .lock import StoreLocked
from .shards import QUANTIZATIONS, Quantization
from .store import EdgeVectorStore

__all__ = ["QUANTIZATIONS", "EdgeVectorStore", "Quantization", "StoreLocked"]

"""Indexer worker: consumes jobs from Redis Streams, decodes images, cuts windows,
gets them encoded and hands the vectors to the index owner. See ``worker.py``."""

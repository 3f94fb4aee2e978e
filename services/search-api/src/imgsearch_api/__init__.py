"""Public search gateway: search endpoints, score aggregation, indexing endpoints,
the web page, and the internal hand-off through which workers write vectors into
the index this process owns."""

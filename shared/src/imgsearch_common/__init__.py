"""Common package of the image search engine.

Public modules, by what they decide:

- ``settings``     — one validated settings object per service, all env-driven.
- ``errors``       — the typed error hierarchy and its single JSON/HTTP mapping.
- ``schemas``      — request/response models of the public REST API.
- ``payloads``     — **the payload contract**: what the index stores with each vector,
  and what a worker hands to the index owner.
- ``windows``      — sliding-window geometry (pure functions).
- ``imaging``      — safe decoding, EXIF orientation, model-input preprocessing.
- ``ids``          — deterministic point ids (content hash + window geometry).
- ``jobs``         — the Redis Streams job queue and batch progress.
- ``vectorstore``  — the vector-store interface, its two back-ends, the one factory and
  the one write order (``writes``).
- ``encoder_client`` — client of the encoder's internal API (uint8 pixels in, vectors out).
- ``backpressure`` — reading a busy server's ``Retry-After`` (how long a caller backs off).
- ``auth``         — credential checks and internal HTTP clients.
- ``healthcheck``  — the images' ``HEALTHCHECK`` command.

The ``imgsearch`` command and the local stack launcher are not here (every service image
installs this package): they live in ``tools/`` (``imgsearch_cli``, ``imgsearch_devstack``).
"""

__version__ = "0.1.0"

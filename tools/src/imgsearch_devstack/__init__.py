"""The whole stack as local processes: used by ``make run`` and by the tests.

Real parts only: a real ``redis-server``, the real encoder, search API and worker
processes, each started as ``python -m <package>`` with its settings in the environment,
and considered up once its ``/health`` answers. ``processes`` starts and stops one
child, ``stack`` the whole set; ``python -m imgsearch_devstack`` is ``make run``.
"""

from .processes import REDIS_HELP, Proc, free_port, start_redis, start_service, wait_healthy
from .stack import LocalStack, StackConfig, wait_batch

__all__ = [
    "REDIS_HELP",
    "LocalStack",
    "Proc",
    "StackConfig",
    "free_port",
    "start_redis",
    "start_service",
    "wait_batch",
    "wait_healthy",
]

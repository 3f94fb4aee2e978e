"""The launcher gives the search API its internal listener (``INTERNAL_PORT``) and points the
workers at it (``API_INTERNAL_URL``), never at the public port."""

from __future__ import annotations

from pathlib import Path

from imgsearch_devstack import LocalStack, StackConfig


def test_the_workers_are_sent_to_the_internal_port(tmp_path: Path) -> None:
    config = StackConfig.on_free_ports(tmp_path, workers=1)
    assert config.internal_port not in (config.api_port, config.encoder_port, 0)
    stack = LocalStack(config)
    env = stack.env()
    assert env["INTERNAL_PORT"] == str(config.internal_port)
    assert env["API_INTERNAL_URL"] == f"http://127.0.0.1:{config.internal_port}"
    assert stack.api_internal_url == env["API_INTERNAL_URL"] != stack.api_url
    assert StackConfig(tmp_path).internal_port == 8002

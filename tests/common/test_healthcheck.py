"""``python -m imgsearch_common.healthcheck``: the images' HEALTHCHECK, against a real
HTTP server on the loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imgsearch_common.healthcheck import main, probe
from imgsearch_devstack import free_port


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/health": 200, "/starting": 503}.get(self.path, 404)
        body = b'{"status": "ok"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_healthy_only_on_a_2xx(server: str) -> None:
    assert probe(f"{server}/health")
    assert not probe(f"{server}/starting")  # a worker that is not ready yet answers 503
    assert not probe(f"{server}/nowhere")


def test_a_closed_port_is_unhealthy() -> None:
    assert not probe(f"http://127.0.0.1:{free_port()}/health", timeout_s=2)


def test_only_http_urls() -> None:
    with pytest.raises(ValueError):
        probe("file:///etc/passwd")


def test_exit_codes(server: str) -> None:
    assert main([f"{server}/health"]) == 0
    assert main([f"{server}/starting"]) == 1
    assert main([]) == 2


def test_the_command_the_images_run(server: str) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "imgsearch_common.healthcheck", f"{server}/health"], timeout=30
    )
    bad = subprocess.run(
        [sys.executable, "-m", "imgsearch_common.healthcheck", f"{server}/starting"], timeout=30
    )
    assert (ok.returncode, bad.returncode) == (0, 1)

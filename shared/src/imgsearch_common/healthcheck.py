"""``python -m imgsearch_common.healthcheck URL``: exit 0 when ``URL`` answers 2xx.

The container images' HEALTHCHECK (the slim images carry no curl or wget). It imports
the standard library only, so a probe costs a Python start-up and nothing more.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

DEFAULT_TIMEOUT_S = 4.0


def probe(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when ``url`` answers with a 2xx status within ``timeout_s``."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("the health URL must be http(s)")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            status: int = response.status
            return 200 <= status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m imgsearch_common.healthcheck URL\n")
        return 2
    return 0 if probe(args[0]) else 1


if __name__ == "__main__":
    sys.exit(main())

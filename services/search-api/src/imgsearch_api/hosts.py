"""Which ``Host`` names the search API answers to, and which ``Origin``s may send it writes.

Pure functions and two small rules, used by the settings (``ALLOWED_HOSTS``,
``ALLOWED_ORIGINS``) and the middleware in ``security.py``:

- a host is compared without its port, in lower case, without a trailing dot, an IPv6
  address in brackets (``[::1]``); ``*.example.com`` matches the sub-domains of
  example.com (not example.com itself); ``*`` matches anything (the check is off);
- the API always answers to ``localhost``, ``127.0.0.1`` and ``[::1]`` (a page elsewhere
  cannot make a browser send those names: DNS rebinding sends the attacker's own name),
  and to ``API_HOST`` when that is one address rather than every one (``0.0.0.0``, ``::``);
- an origin may write when it is the request's own (same scheme-less host and port as the
  ``Host`` header), an ``http``/``https`` origin on a named allowed host (any port), or one
  of ``ALLOWED_ORIGINS`` exactly; ``null``, ``file://`` and other schemes never.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

#: Names the API always answers to.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: ``API_HOST`` values that mean "every address" rather than one.
_EVERY_ADDRESS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 - compared, not bound
_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_name(value: str) -> str:
    """``value`` (a ``Host`` header, a setting) as hosts are compared; ``""`` when it is
    not a host (an empty header, a port that is not a number, an unclosed bracket)."""
    text = value.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else "?"
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return ""
        return text[: end + 1]
    if text.count(":") > 1:  # a bare IPv6 address (settings write them so)
        return f"[{text}]"
    name, sep, port = text.partition(":")
    if sep and not port.isdigit():
        return ""
    return name.rstrip(".")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address to bind) reaches only this machine: 127.0.0.0/8,
    ``::1`` or ``localhost``."""
    text = host.strip().lower().strip("[]")
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def trusted_hosts(api_host: str, allowed: Iterable[str]) -> tuple[str, ...]:
    """The names the API answers to: the loopback names, ``api_host`` when it is one
    address, and ``allowed`` (``ALLOWED_HOSTS``; wildcard entries kept as written)."""
    names = list(LOOPBACK_HOSTS)
    if api_host.strip().lower() not in _EVERY_ADDRESS:
        names.append(host_name(api_host))
    for entry in allowed:
        text = entry.strip().lower()
        names.append(text if text == "*" or text.startswith("*.") else host_name(text))
    return tuple(dict.fromkeys(n for n in names if n))


@dataclass(frozen=True)
class HostRule:
    """Names (exact), domains whose sub-domains match, or anything (``*``)."""

    names: frozenset[str]
    domains: tuple[str, ...]
    anything: bool

    @classmethod
    def of(cls, trusted: Sequence[str]) -> HostRule:
        domains = tuple(t[1:] for t in trusted if t.startswith("*."))  # ".example.com"
        names = frozenset(t for t in trusted if t != "*" and not t.startswith("*."))
        return cls(names, domains, "*" in trusted)

    def named(self) -> HostRule:
        """The same names and domains, without ``*``."""
        return HostRule(self.names, self.domains, False)

    def allows(self, host: str) -> bool:
        if self.anything:
            return True
        name = host_name(host)
        return bool(name) and (name in self.names or name.endswith(self.domains))


def origin_name(value: str) -> str:
    """``scheme://host[:port]`` in lower case, the scheme's default port left out;
    ``""`` for anything that is not an http/https origin (``null``, ``file://``)."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return ""
    host = host_name(parts.netloc.rsplit(":", 1)[0] if port is not None else parts.netloc)
    if not host:
        return ""
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


@dataclass(frozen=True)
class OriginRule:
    """Origins whose pages may send writes (see the module's docstring)."""

    hosts: HostRule
    exact: frozenset[str]
    anything: bool

    @classmethod
    def of(cls, hosts: HostRule, allowed_origins: Sequence[str]) -> OriginRule:
        exact = frozenset(o for o in (origin_name(a) for a in allowed_origins) if o)
        # ALLOWED_HOSTS=* turns the Host check off, not this one: an origin must still be
        # the request's own, or named.
        return cls(hosts.named(), exact, "*" in (a.strip() for a in allowed_origins))

    def allows(self, origin: str, host_header: str) -> bool:
        if self.anything:
            return True
        normalized = origin_name(origin)
        if not normalized:
            return False
        if normalized in self.exact:
            return True
        scheme, _, netloc = normalized.partition("://")
        if netloc == _host_and_port(host_header, scheme):
            return True  # same origin: the page this server sent
        return self.hosts.allows(netloc)


def _host_and_port(host_header: str, scheme: str) -> str:
    """The ``Host`` header as an origin's host[:port] for ``scheme`` (default port left out)."""
    name = host_name(host_header)
    _, sep, port = host_header.strip().rpartition(":")
    explicit = name and sep and port.isdigit() and not host_header.strip().endswith("]")
    if explicit and int(port) != _DEFAULT_PORTS[scheme]:
        return f"{name}:{int(port)}"
    return name

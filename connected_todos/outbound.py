"""Outbound: the one way the app fetches from another host, and how long it may keep the answer.

Owns the guards on a fetch that a stranger can cause, such as a client's metadata document or its
keys (draft-ietf-oauth-client-id-metadata-document §5, §8.6 and §8.7): https only, a host that
resolves to no special-use address (RFC 6890), a connection to the very address that was checked
(so a second DNS answer cannot point elsewhere), no redirect followed, only a 200 counts, a cap on
the bytes read and a short deadline. It also reads how long an answer stays fresh (RFC 9111 §4.2)
and revalidates with its ETag (RFC 9110 §13.1.2). Certificates are checked against the system's
CAs, or the bundle named by REQUESTS_CA_BUNDLE or SSL_CERT_FILE.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from ipaddress import IPv4Address
from ipaddress import IPv6Address
from ipaddress import ip_address
from ipaddress import ip_network
from typing import Any
from urllib.parse import urlsplit

from .rules import JSON_DEPTH_MAX
from .rules import json_depth
from .settings import APP_VERSION

TIMEOUT = 5.0  # seconds for the whole fetch: connecting, the TLS handshake and reading
HEURISTIC_FRESHNESS = 300  # RFC 9111 §4.2.2: an answer without explicit freshness, five minutes
MAX_FRESHNESS = 24 * 3600  # however long an answer says it stays fresh, ask again within a day
# RFC 6890 special-use blocks that Python's is_global does not already exclude.
SPECIAL_USE = [ip_network("192.0.0.0/24"), ip_network("192.88.99.0/24")]
NAT64 = ip_network("64:ff9b::/96")  # RFC 6052: an IPv4 address in IPv6 clothing
LOCAL_NAT64 = ip_network("64:ff9b:1::/48")  # RFC 8215: a network's own translator
GLOBAL_UNICAST = ip_network("2000::/3")  # RFC 4291 §2.4: the only public IPv6 unicast
ADDRESSES_TRIED = 2  # of a host's addresses; more would stretch the deadline for nothing
HEADERS_MAX = 16 * 1024  # the status line, headers, interim answers and trailers of one response
JSON_TYPES = ("application/json",)


class FetchError(Exception):
    """A fetch that failed or was refused; the message says why, in a developer's terms."""


@dataclass(frozen=True)
class Fetched:
    """A JSON object fetched, or confirmed unchanged (``document`` is None after a 304)."""

    document: dict[str, Any] | None
    fresh_for: int  # seconds
    etag: str | None


def special_use(address: IPv4Address | IPv6Address) -> bool:
    """Whether an address is not a public unicast one (RFC 6890), seeing through IPv4 addresses
    carried in IPv6 (mapped, 6to4 and NAT64). In IPv6 only global unicast (2000::/3) is public."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped or address.sixtofour:
            return special_use(address.ipv4_mapped or address.sixtofour)
        if address in NAT64:
            return special_use(IPv4Address(int(address) & 0xFFFFFFFF))
        if address not in GLOBAL_UNICAST or address in LOCAL_NAT64:
            return True
    return not address.is_global or address.is_multicast or any(address in net for net in SPECIAL_USE)


def checked_addresses(host: str, port: int, allow_loopback: bool) -> list[str]:
    """The addresses to connect to: every address the host resolves to must be public, or (in
    development, with ``allow_loopback``) a loopback address."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise FetchError(f"the host {host} could not be resolved") from None
    addresses = [ip_address(answer[4][0].split("%")[0]) for answer in answers]
    refused = [a for a in addresses if special_use(a) and not (allow_loopback and a.is_loopback)]
    if refused or not addresses:
        raise FetchError(f"the host {host} resolves to an address that is not public")
    return list(dict.fromkeys(str(a) for a in addresses))[:ADDRESSES_TRIED]


@lru_cache(maxsize=4)
def tls_context(cafile: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


class Budget(io.RawIOBase):
    """What a response may send, status line, headers, interim answers and body together: a
    host that talks on and on (endless 1xx answers or trailers) runs out of it."""

    def __init__(self, raw: io.RawIOBase, limit: int) -> None:
        self.raw, self.left, self.limit = raw, limit, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise FetchError(f"it sent more than {self.limit} bytes")
        received = self.raw.readinto(memoryview(buffer)[: self.left]) or 0
        self.left -= received
        return received

    def close(self) -> None:
        self.raw.close()
        super().close()


class BudgetedSocket:
    """A socket whose responses are read through a Budget; everything else is the socket's."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self._sock, self._limit = sock, limit

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        # The socket's own file, so that the socket stays open while the response is read.
        return io.BufferedReader(Budget(self._sock.makefile("rb", buffering=0), self._limit))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class PinnedConnection(http.client.HTTPSConnection):
    """An HTTPS connection to an address already checked, that still verifies the certificate
    (and sends SNI and Host) for the host name, and reads at most ``limit`` bytes."""

    def __init__(self, host: str, port: int, addresses: list[str], deadline: float, limit: int) -> None:
        cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or None
        super().__init__(host, port, timeout=TIMEOUT, context=tls_context(cafile))
        self.addresses, self.deadline, self.limit = addresses, deadline, limit
        self.raw: socket.socket | None = None

    def connect(self) -> None:
        for address in self.addresses:  # in the resolver's order, as a browser tries them
            try:
                sock = socket.create_connection((address, self.port), remaining(self.deadline))
                break
            except OSError:
                if address == self.addresses[-1]:
                    raise
        sock.settimeout(remaining(self.deadline))  # the handshake's, and each read's, at most
        self.raw = self._context.wrap_socket(sock, server_hostname=self.host)
        self.sock = BudgetedSocket(self.raw, self.limit)


def fetch_json(url: str, *, max_bytes: int, etag: str | None = None, allow_loopback: bool = False) -> Fetched:
    """GET a JSON object from an https URL, with every guard above. FetchError says what failed."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise FetchError("only https URLs are fetched")
    port = parts.port or 443
    deadline = time.monotonic() + TIMEOUT
    addresses = checked_addresses(parts.hostname, port, allow_loopback)
    connection = PinnedConnection(parts.hostname, port, addresses, deadline, max_bytes + HEADERS_MAX)
    headers = {"Accept": "application/json", "User-Agent": f"ConnectedTodos/{APP_VERSION}"}
    if etag:
        headers["If-None-Match"] = etag
    watchdog, expired = None, threading.Event()

    def cut_off() -> None:
        expired.set()
        connection.raw.shutdown(socket.SHUT_RDWR)

    late = FetchError(f"no whole answer within {TIMEOUT:g} seconds")
    try:
        connection.connect()
        # http.client loops over interim answers, headers and trailers on its own, each read with a
        # fresh timeout: only shutting the socket at the deadline bounds the whole fetch.
        watchdog = threading.Timer(remaining(deadline), cut_off)
        watchdog.start()
        connection.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), headers=headers)
        response = connection.getresponse()
        if response.status == 304 and etag:
            return Fetched(None, freshness(response.headers), etag)
        if response.status != 200:
            raise FetchError(f"it answered HTTP {response.status}, and only a 200 is accepted")
        body = read_at_most(response, max_bytes)
    except (OSError, http.client.HTTPException, ValueError) as error:  # timeouts and TLS errors are OSErrors
        raise (late if expired.is_set() else FetchError(describe(error))) from None
    except FetchError:
        if expired.is_set():
            raise late from None
        raise
    finally:
        if watchdog is not None:
            watchdog.cancel()
        connection.close()
    if expired.is_set():  # what was read before the cut may look whole, but is not
        raise late
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type not in JSON_TYPES and not (media_type.startswith("application/") and media_type.endswith("+json")):
        raise FetchError("it is not served as application/json")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise FetchError("it is not valid JSON") from None
    if not isinstance(document, dict):
        raise FetchError("it is not a JSON object")
    if json_depth(document) > JSON_DEPTH_MAX:
        raise FetchError(f"it nests deeper than {JSON_DEPTH_MAX} levels")
    return Fetched(document, freshness(response.headers), response.headers.get("ETag"))


def remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def read_at_most(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    """The body, or FetchError once it passes ``max_bytes`` (the watchdog ends a slow drip)."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and len(length) < 12 and int(length) > max_bytes:
        raise FetchError(f"it is larger than {max_bytes} bytes")
    body = b""
    while chunk := response.read1(max_bytes + 1 - len(body)):
        body += chunk
        if len(body) > max_bytes:
            raise FetchError(f"it is larger than {max_bytes} bytes")
    return body


def freshness(headers: http.client.HTTPMessage) -> int:
    """How many seconds an answer stays fresh (RFC 9111 §4.2.1), less its Age (§4.2.3), within
    our own bounds: none for no-store or no-cache, at most a day."""
    directives = {
        d.strip().split("=")[0].lower(): d.strip().partition("=")[2]
        for d in headers.get("Cache-Control", "").split(",")
    }
    if "no-store" in directives or "no-cache" in directives:
        return 0
    lifetime = HEURISTIC_FRESHNESS
    if directives.get("max-age", "").strip('"').isdigit():
        lifetime = int(directives["max-age"].strip('"'))
    elif expires := headers.get("Expires"):
        try:
            date = parsedate_to_datetime(headers["Date"]) if headers.get("Date") else datetime.now(UTC)
            lifetime = int((parsedate_to_datetime(expires) - date).total_seconds())
        except (TypeError, ValueError):
            lifetime = 0  # §5.3: an invalid Expires means already expired
    age = headers.get("Age", "0")
    return max(0, min(lifetime - (int(age) if age.isdigit() else 0), MAX_FRESHNESS))


def describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no whole answer within {TIMEOUT:g} seconds"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"its certificate is not valid ({error.verify_message})"
    return type(error).__name__ if not str(error) else str(error)[:200]

"""Connection limits of the build service's HTTP server (uvicorn's ``h11`` protocol, guarded).

Two limits keep one client from holding the server's connections (and file descriptors):

* a request-header timeout: a connection that has not delivered a complete request head within
  ``header_timeout_s`` seconds of its first byte (or of being opened) is answered 408 and
  closed. The clock runs whenever the server waits on the client outside a request (the first
  request, the next one on a kept-alive connection, body bytes trickled after the answer); while
  the application handles a request, its own limits apply (uploads have idle and total timeouts).
* a per-client-address cap: at most ``max_per_ip`` open connections per remote IP address; one
  past it is answered 429 and closed at once, before anything is read.

Nothing here limits the server's connections in total, so clients at other addresses (a health
checker on loopback) are still served while one address floods.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


def _raw_response(status: int, reason: str, message: str, extra: str = "") -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 answer with a plain-text body (bytes on the wire)."""
    body = (message + "\n").encode()
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    return head.encode() + body


class ConnectionGuard:
    """The limits and the open-connection count per client address of one server.

    Protocol instances call it from the event loop's thread only, so it needs no lock.

    Args:
        header_timeout_s: seconds a connection may take to deliver a request head.
        max_per_ip: open connections allowed per remote IP address.
    """

    def __init__(self, header_timeout_s: float, max_per_ip: int) -> None:
        self.header_timeout_s, self.max_per_ip = header_timeout_s, max_per_ip
        self.open: Counter[str] = Counter()
        self.at_cap: set[str] = set()  # addresses refused since their count was last zero (logged once)
        self.refused = 0
        self.timed_out = 0

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address``; False (not counted) when it is at its cap."""
        if self.open[address] >= self.max_per_ip:
            self.refused += 1
            if address not in self.at_cap:
                self.at_cap.add(address)
                log.warning("refusing connections from %s: %d already open (--max-connections-per-ip)", address, self.max_per_ip)
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        """A counted connection from ``address`` closed."""
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]
            self.at_cap.discard(address)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head timeout and a per-address connection cap.

    Use :func:`guarded_protocol` to get a subclass bound to one :class:`ConnectionGuard`.
    """

    guard: ConnectionGuard = ConnectionGuard(10.0, 32)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._address: str | None = None  # set once the connection is counted
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else "unknown"
        if not self.guard.admit(address):
            self._refused = True
            self.transport = transport
            transport.write(_raw_response(429, "Too Many Requests", "too many open connections from your address; close some and retry", "retry-after: 1\r\n"))
            transport.close()
            return
        self._address = address
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._refused:
            return
        if self._address is not None:
            self.guard.release(self._address)
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._cancel_head_timer()  # idle until the next byte: the keep-alive timeout applies
        if self._in_request():  # a pipelined request started at once
            return
        if not self.transport.is_closing() and self.conn.their_state is not h11.IDLE:
            self._arm_head_timer()  # the client still owes bytes of the answered request

    def _in_request(self) -> bool:
        """True while the application handles a request on this connection."""
        return self.cycle is not None and not self.cycle.response_complete

    def _watch(self) -> None:
        """After bytes arrived: run the head clock unless the application now has a request."""
        if self._in_request():
            self._cancel_head_timer()
        elif self._head_timer is None and not self.transport.is_closing():
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.guard.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        """The client took too long: answer 408 where HTTP allows it, then close."""
        self._head_timer = None
        if self.transport.is_closing() or self._in_request():
            return
        self.guard.timed_out += 1
        if self.conn.our_state is h11.IDLE and self.conn.their_state is h11.IDLE:
            self.transport.write(_raw_response(408, "Request Timeout", f"the request head did not arrive within {self.guard.header_timeout_s:g} s"))
        self.transport.close()


def guarded_protocol(header_timeout_s: float, max_per_ip: int) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass with its own guard, for ``uvicorn.Config(http=...)``.

    Args:
        header_timeout_s: seconds a connection may take to deliver a request head (> 0).
        max_per_ip: open connections allowed per remote IP address (>= 1).
    """
    guard = ConnectionGuard(header_timeout_s, max_per_ip)
    return type("ServiceH11Protocol", (GuardedH11Protocol,), {"guard": guard})

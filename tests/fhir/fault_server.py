"""A tiny threaded HTTP server on loopback for faults a real FHIR server will not produce.

Hangs, connection resets, 500s, garbage JSON, trickled bodies, 429/503 with Retry-After,
redirects: each test gives a ``behave(request) -> Action`` function. Raw sockets rather than a
framework so a test can really hang or reset a connection. Every request is recorded (path and
headers) so tests can assert what the service sent.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Action:
    """What to do with one request. ``kind``: respond | hang | reset | trickle."""

    kind: str = "respond"
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line (respond) / between bytes (trickle)


def json_action(resource: Any, status: int = 200, **kwargs: Any) -> Action:
    return Action(
        status=status,
        body=json.dumps(resource).encode(),
        headers={"Content-Type": "application/fhir+json"},
        **kwargs,
    )


_REASONS = {200: "OK", 302: "Found", 404: "Not Found", 429: "Too Many Requests", 500: "Error"}


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
        except OSError:
            return
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        lines = head.split("\r\n")
        method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        seen = Seen(method, path, headers)
        with self.server.lock:
            self.server.seen.append(seen)
        action = self.server.behave(seen)
        with suppress(OSError):
            self._act(sock, action)

    def _act(self, sock: socket.socket, action: Action) -> None:
        if action.kind == "hang":
            self.server.stopping.wait(30)
            return
        if action.kind == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            return
        if (
            action.delay_s
            and action.kind == "respond"
            and self.server.stopping.wait(action.delay_s)
        ):
            return
        reason = _REASONS.get(action.status, "Status")
        headers = {"Content-Length": str(len(action.body)), "Connection": "close"}
        headers.update(action.headers)
        head = f"HTTP/1.1 {action.status} {reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        sock.sendall((head + "\r\n").encode("latin-1"))
        if action.kind == "trickle":
            for byte in action.body:
                if self.server.stopping.wait(action.delay_s):
                    return
                sock.sendall(bytes([byte]))
            return
        sock.sendall(action.body)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops SYNs when a hook fans out its queries

    def __init__(self, behave: Callable[[Seen], Action]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behave = behave
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()


@dataclass
class FaultServer:
    server: _Server

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def seen(self) -> list[Seen]:
        with self.server.lock:
            return list(self.server.seen)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


@contextmanager
def fault_server(behave: Callable[[Seen], Action]) -> Iterator[FaultServer]:
    server = _Server(behave)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield FaultServer(server)
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        time.sleep(0)  # let handler threads see `stopping`

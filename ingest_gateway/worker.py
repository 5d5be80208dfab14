"""The gateway's gunicorn worker: gthread, except that slow and idle clients cost no thread and every read ends.

gunicorn's gthread worker gives a connection to a thread as soon as a byte of it arrives and then reads the request
head with a blocking socket and no time limit: a client sending a byte a second holds a thread for as long as it
likes, and ``workers x threads`` such clients stop the gateway.  Here the event loop reads the head (and a body of
up to ``PREREAD_BODY_BYTES``, which covers ordinary batches) without blocking, and a thread is given only to a
request that has arrived.  Every connection has a deadline: ``EVENTPIPE_HTTP_READ_TIMEOUT_S`` for the head, plus
the declared body size at ``EVENTPIPE_HTTP_MIN_UPLOAD_BYTES_PER_S``; a connection still incomplete then is
answered 408 and closed.  A larger body is read by its thread through a ``DeadlineSocket``, whose reads end at
the same deadline (``TimeoutError``, which the app answers 408).

Closing a connection after its answer lingers (half-close, then read until the client closes, at most
``LINGER_S``) so that unread request bytes do not turn into a reset that destroys the answer; gthread does this
with blocking reads in its event loop — up to 2 s during which no other connection is served — so here the
event loop waits for the client's end like for any other read.

The app may ask for the connection to be closed after its answer (``Connection: close``, e.g. after a 413 whose
body it discarded); gunicorn drops that hop-by-hop header, so ``close_when_asked`` passes it on.
"""

from __future__ import annotations

import errno
import re
import selectors
import socket
import time
from functools import partial
from typing import Any, Callable, Iterable

from gunicorn.workers.gthread import TConn, ThreadWorker

from eventpipe.memory import large_allocations_return_to_the_system

PREREAD_BODY_BYTES = 256 * 1024  # a batch of 100 seed-like events is about 31 KB
MAX_HEAD_BYTES = 64 * 1024       # past this without the end of the head, gunicorn's parser answers (431/400)
RECV_BYTES = 64 * 1024
LINGER_S = 2.0                   # as gunicorn's close_graceful
LINGER_BYTES = 1024 * 1024       # read at most this much of a closing connection before closing it outright
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d{1,18})[ \t]*(?=\r\n)", re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding[ \t]*:", re.IGNORECASE)
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect[ \t]*:[ \t]*100-continue[ \t]*\r\n", re.IGNORECASE)


class DeadlineSocket(socket.socket):
    """A client socket whose reads in a worker thread end at ``deadline`` (``time.monotonic()``) with
    ``TimeoutError``, and wait at most ``idle_s`` for each piece.  ``deadline`` None: plain socket behaviour
    (the event loop's non-blocking reads)."""

    deadline: float | None = None
    idle_s: float = 10.0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the request did not arrive within its deadline")
            self.settimeout(min(remaining, self.idle_s))
        return super().recv(bufsize, flags)


def body_length(head: bytes) -> int | None:
    """The Content-Length of a request head (from the request line to the blank line), None when the body is
    chunked or its length is not given or is malformed (gunicorn's parser then refuses or reads it). Pure."""
    if _TRANSFER_ENCODING.search(head):
        return None
    lengths = set(_CONTENT_LENGTH.findall(head))
    return int(lengths.pop()) if len(lengths) == 1 else None


def body_to_preread(head: bytes) -> int:
    """How much of the body the event loop waits for before a thread takes the request: all of a declared body
    up to PREREAD_BODY_BYTES, else nothing — nor when the client waits for ``100 Continue`` (gunicorn sends it when
    a thread takes the request) before sending its body. Pure."""
    declared = body_length(head)
    if declared is None or declared > PREREAD_BODY_BYTES or _EXPECT_CONTINUE.search(head):
        return 0
    return declared


def read_deadline(started: float, declared_body: int | None, timeout_s: float, min_rate: int,
                  unknown_body: int) -> float:
    """When a request that started arriving at ``started`` must have arrived: the head within ``timeout_s``, the
    body (``unknown_body`` bytes assumed when chunked) at ``min_rate`` bytes/s besides. Pure."""
    size = unknown_body if declared_body is None else declared_body
    return started + timeout_s + size / max(1, min_rate)


def close_when_asked(app: Callable) -> Callable:
    """WSGI middleware: an answer with ``Connection: close`` closes the connection (gunicorn's Response drops
    hop-by-hop headers of the app and keeps the connection unless told by ``force_close``)."""

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            if any(n.lower() == "connection" and v.strip().lower() == "close" for n, v in headers):
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if force_close is not None:
                    force_close()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wrapped


class GatewayConn(TConn):
    """gthread's connection, whose graceful close is a lingering close in the worker's event loop."""

    def __init__(self, cfg: Any, sock: DeadlineSocket, client: Any, server: Any,
                 linger: Callable[[socket.socket], None]) -> None:
        super().__init__(cfg, sock, client, server)
        self.linger = linger

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.linger(self.sock)
        else:
            super().close()


# Above librdkafka's own buffers (its batches are up to 1 MB): at 256 KiB they too became a mapping each, and the
# confluent-kafka gateway lost a fifth of its throughput (bench, 29.5 k → 23.3 k events/s); at 4 MiB it did not.
# Request bodies up to the limit (10 MiB) and bombs decompressed up to it are allocated by whichever request
# thread runs them: without a fixed threshold a soak took a gateway from 101 to 308 MB.
MMAP_THRESHOLD = 4 * 1024 * 1024


class GatewayWorker(ThreadWorker):
    """gthread with requests read by the event loop before a thread takes them (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = self.app.settings
        self.read_timeout_s: float = settings.http_read_timeout_s
        self.min_rate: int = settings.http_min_upload_bytes_per_s
        self.unknown_body: int = settings.max_body_bytes
        self.arriving: dict[TConn, float] = {}  # connection -> its deadline, while the event loop reads it
        self.lingering: dict[socket.socket, list[float]] = {}  # closing socket -> [deadline, bytes read]

    def init_process(self) -> None:
        large_allocations_return_to_the_system(MMAP_THRESHOLD)  # in the worker: the master serves no request
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = close_when_asked(self.wsgi)

    def accept(self, listener: Any) -> None:
        """A new connection: read by the event loop until its request is in."""
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):  # transient: another took it
                return
            raise  # a bug or a broken listener: the worker dies and the master replaces it
        self.nr_conns += 1
        sock = DeadlineSocket(client.family, client.type, client.proto, fileno=client.detach())
        sock.idle_s = self.read_timeout_s
        self.enqueue_req(GatewayConn(self.cfg, sock, address, listener.getsockname(), self._linger))

    def enqueue_req(self, conn: TConn) -> None:
        """gthread calls this for a new connection, a kept-alive one that became readable and one with a
        pipelined request already buffered: start reading the request; a thread takes it once it is in."""
        if getattr(conn, "request_in", False):
            conn.request_in = False
            super().enqueue_req(conn)
            return
        conn.sock.deadline = None
        conn.sock.setblocking(False)
        conn.head = bytearray(conn.parser.unreader.take_buffered() if conn.parser is not None else b"")
        conn.wanted = None  # bytes that make the request complete, once its head is known
        conn.started = time.monotonic()
        self.arriving[conn] = read_deadline(conn.started, 0, self.read_timeout_s, self.min_rate, 0)
        if conn.head and self._complete(conn):
            self._dispatch(conn)
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: TConn, _sock: Any) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):  # transient: nothing to read after all
            return
        except OSError:  # invalid input: the client reset the connection
            data = b""
        if not data:
            self.poller.unregister(conn.sock)
            self._drop(conn)
            return
        conn.head += data
        if self._complete(conn):
            self.poller.unregister(conn.sock)
            self._dispatch(conn)

    def _complete(self, conn: TConn) -> bool:
        """Whether enough of the request has arrived for a thread to serve it without waiting on the client."""
        if conn.wanted is None:
            end = conn.head.find(b"\r\n\r\n")
            if end < 0:
                return len(conn.head) > MAX_HEAD_BYTES
            head = bytes(conn.head[:end + 2])
            conn.wanted = end + 4 + body_to_preread(head)
            self.arriving[conn] = read_deadline(conn.started, body_length(head), self.read_timeout_s, self.min_rate,
                                                self.unknown_body)
        return len(conn.head) >= conn.wanted

    def _dispatch(self, conn: TConn) -> None:
        deadline = self.arriving.pop(conn)
        conn.init()  # the HTTP/1.1 parser (no TLS, no HTTP/2 here: nothing blocks)
        conn.parser.unreader.unread(bytes(conn.head))
        conn.head = None
        conn.data_ready = True
        conn.sock.deadline = deadline
        conn.request_in = True
        self.enqueue_req(conn)

    def _drop(self, conn: TConn) -> None:
        self.arriving.pop(conn, None)
        self.nr_conns -= 1
        conn.close()

    def _linger(self, sock: socket.socket) -> None:
        """Close ``sock`` once the client has closed its end too (or after LINGER_S): our FIN first, so that the
        client reads the whole answer before anything it still sends could reset the connection."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, self._on_lingering_readable)
        except (OSError, ValueError):  # invalid input: the client is already gone
            sock.close()
            return
        self.lingering[sock] = [time.monotonic() + LINGER_S, 0]

    def _on_lingering_readable(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):  # transient: nothing to read after all
            return
        except OSError:  # invalid input: the client reset the connection
            data = b""
        state = self.lingering[sock]
        state[1] += len(data)
        if not data or state[1] > LINGER_BYTES:
            self._end_linger(sock)

    def _end_linger(self, sock: socket.socket) -> None:
        del self.lingering[sock]
        self.poller.unregister(sock)
        sock.close()

    def murder_pending(self) -> None:
        """Also close connections whose request did not arrive in time, and lingering ones past LINGER_S (called
        by the loop about every second)."""
        super().murder_pending()
        now = time.monotonic()
        for sock in [s for s, (deadline, _) in self.lingering.items() if deadline <= now]:
            self._end_linger(sock)
        for conn in [c for c, deadline in self.arriving.items() if deadline <= now]:
            self.poller.unregister(conn.sock)
            try:
                conn.sock.send(REQUEST_TIMEOUT)  # best effort: the socket is non-blocking
            except OSError:  # invalid input: the client is gone or not reading
                pass
            self._drop(conn)

    def finish_request(self, conn: TConn, fs: Any) -> None:
        conn.sock.deadline = None  # back in the event loop: its reads are non-blocking again
        super().finish_request(conn, fs)

"""Worker API turns: at most WORKER_API_TURNS worker calls of a portal process run at once; the others
wait off the GIL. A small body is read before the call takes its turn; a call gives its turn away while
it reads a large upload from its client, or once it has waited database.WriterQueue.KEEP_TURN_S for
another process's writer.

Why: CPython runs one thread's Python at a time, and a thread that lets go of the GIL for a moment (each
SQLite statement does) waits up to the switch interval (5 ms) to get it back while other threads run.
With eight request threads runnable, a completion's writer turn took 7 ms instead of 3.5 ms, held while
the other processes queued for the same writer (bench/dispatch.py, 16 workers). A call that has its turn
keeps it through short waits for the writer and the database, so its writer turn is as short as it is
uncontended. Pages, the creator API and the app's downloads (sent after the call returns) take no turn.
"""

from __future__ import annotations

import contextlib
import io
import threading

_here = threading.local()

# A body up to this size is read whole before the call takes its turn (a client sending even a small
# body slowly would hold the turn meanwhile); a larger one streams, giving the turn away at each read.
BUFFERED_BODY = 64 * 1024


class Turns:
    """`slots` turns, handed to waiting threads as they free up."""

    def __init__(self, slots: int):
        self._free = threading.Semaphore(slots)

    def take(self) -> None:
        self._free.acquire()
        _here.turns = self

    def give(self) -> None:
        _here.turns = None
        self._free.release()


@contextlib.contextmanager
def waiting():
    """Give this thread's turn away (if it has one) while the block waits, and take it back after; kept
    while the thread holds SQLite's writer turn, since another call could take the turn and wait for that
    writer while this one waits for the turn."""
    from .database import holds_writer_turn
    turns = getattr(_here, "turns", None)
    if turns is None or holds_writer_turn():
        yield
        return
    turns.give()
    try:
        yield
    finally:
        turns.take()


class _GivingInput:
    """wsgi.input whose reads give the call's turn away: a large upload may come slowly."""

    def __init__(self, raw):
        self._raw = raw

    def _waiting(self, read, *args):
        with waiting():
            return read(*args)

    def read(self, *args):
        return self._waiting(self._raw.read, *args)

    def readinto(self, buffer) -> int:
        if hasattr(self._raw, "readinto"):
            return self._waiting(self._raw.readinto, buffer)
        data = self._waiting(self._raw.read, len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readline(self, *args):
        return self._waiting(self._raw.readline, *args)

    def readlines(self, *args):
        return self._waiting(self._raw.readlines, *args)

    def __iter__(self):
        return iter(self.readline, b"")


def _read_up_to(stream, length: int) -> bytes:
    """`length` bytes of `stream`, or all it has if the client sends fewer."""
    parts, left = [], length
    while left > 0 and (chunk := stream.read(left)):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class WorkerApiTurns:
    """WSGI middleware: each worker API call runs in a turn, from the app's call to its return (the server
    writes the response after, off the turn)."""

    def __init__(self, app, slots: int, prefix: str):
        self.app = app
        self.turns = Turns(slots)
        self.prefix = prefix  # the worker API's paths

    def __call__(self, environ, start_response):
        if not environ.get("PATH_INFO", "").startswith(self.prefix):
            return self.app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > BUFFERED_BODY or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            environ["wsgi.input"] = _GivingInput(environ["wsgi.input"])
        elif length:
            environ["wsgi.input"] = io.BytesIO(_read_up_to(environ["wsgi.input"], length))
        self.turns.take()
        try:
            return self.app(environ, start_response)
        finally:
            self.turns.give()

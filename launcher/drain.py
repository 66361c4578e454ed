"""Counting in-flight requests, so a server that cannot drain by itself can be drained.

A request is in flight from the moment the app is called until the server calls ``close()`` on
the response iterable (PEP 3333 requires it), i.e. until the last byte was handed to the server.
The wrapper keeps ``__len__`` when the app's iterable has one: waitress sets Content-Length from
a one-item list, and hiding it would turn such responses into chunked ones.
"""

from __future__ import annotations

import itertools
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    WSGIApp = Callable[..., Any]


#: Set once this process starts stopping: --health-path answers 503 from then on.
draining = threading.Event()


class InFlight:
    """Count of running requests (``active``) and of all requests (``total``), safe across threads
    without a lock: two ``itertools.count`` (one step is a single C call, atomic under the GIL) of
    requests begun and ended.  A lock cost ~1 us a request, and more under gevent, whose patched
    lock is written in Python."""

    def __init__(self) -> None:
        self._begun = itertools.count()
        self._ended = itertools.count()
        #: count a request begun / ended: one step each, a C method, no Python frame per request
        self.begin: Callable[[], int] = self._begun.__next__
        self.end: Callable[[], int] = self._ended.__next__

    @property
    def total(self) -> int:
        return count_value(self._begun)

    @property
    def active(self) -> int:
        ended = count_value(self._ended)  # first: ``begun`` read after it is at least as large
        return count_value(self._begun) - ended

    def wrap(self, app: WSGIApp, *, multiprocess: bool = False) -> WSGIApp:
        """Return ``app`` counted: begin on call, end when the response iterable is closed.

        ``multiprocess`` marks the environ of a worker forked by the launcher's supervisor: the
        server inside it cannot know other processes serve the same socket (PEP 3333's
        wsgi.multiprocess).
        """
        begin, end = self.begin, self.end

        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if multiprocess:
                environ["wsgi.multiprocess"] = True
            begin()
            try:
                result = app(environ, start_response)
            except BaseException:
                end()
                raise
            if hasattr(result, "__len__"):
                return _SizedCounted(result, end)
            return _Counted(result, end)

        counted.__wrapped__ = app  # type: ignore[attr-defined]
        return counted


def count_value(counter: itertools.count[int]) -> int:
    """The next value of ``counter`` (the number of steps taken), without taking a step."""
    return int(repr(counter)[6:-1])  # "count(N)"


class _Counted:
    __slots__ = ("_end", "_open", "_result")

    def __init__(self, result: Iterable[bytes], end: Callable[[], object]) -> None:
        self._result = result
        self._end = end
        self._open = True

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._end()


class _SizedCounted(_Counted):
    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]

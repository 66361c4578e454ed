"""Tornado's WSGIContainer run by hand: the native baseline of overhead.py.

    python benchmarks/native/tornado_server.py --port 8000 [--threads 4] [benchmarks.apps:hello]

What a careful user does: an executor of N threads (without one every request runs on the loop
thread and blocking apps serialise), the same N as the launcher's --threads, one process.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from concurrent.futures import ThreadPoolExecutor

from tornado.httpserver import HTTPServer
from tornado.wsgi import WSGIContainer


async def serve(app: object, host: str, port: int, threads: int) -> None:
    """Listen and run until killed."""
    # --threads 0: the bare container, every request on the loop thread (the trap the launcher avoids)
    executor = ThreadPoolExecutor(threads) if threads > 0 else None
    container = WSGIContainer(app, executor=executor)  # type: ignore[arg-type]
    server = HTTPServer(container)
    server.listen(port, host)
    await asyncio.Event().wait()


def main() -> None:
    """Parse the flags, import the app, serve forever."""
    parser = argparse.ArgumentParser(description="tornado WSGIContainer, by hand")
    parser.add_argument("app", nargs="?", default="benchmarks.apps:hello")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4)
    ns = parser.parse_args()
    module, _, attr = ns.app.partition(":")
    app = getattr(importlib.import_module(module), attr or "app")
    asyncio.run(serve(app, ns.host, ns.port, ns.threads))


if __name__ == "__main__":
    main()

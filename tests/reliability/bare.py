"""What the servers guarantee by themselves: the corpus against waitress, gevent.pywsgi and Twisted Web
run bare (their own defaults, no launcher, no hygiene layer), and against the other backends through
the launcher (which adds no layer to them).  Prints one table; ``--json PATH`` also writes it.

    python -m tests.reliability.bare                      # every installed HTTP backend
    python -m tests.reliability.bare waitress gevent      # some

Not a test: the numbers in tests/reliability/README.md come from it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.reliability.corpus import PROBES, run_corpus

REPO = Path(__file__).resolve().parent.parent.parent

BARE = {
    "waitress": "from waitress import serve\nserve(app, listen='127.0.0.1:{port}', threads=40, _quiet=True)\n",
    "gevent": ("from gevent import monkey\nmonkey.patch_all()\nfrom gevent.pywsgi import WSGIServer\n"
               "WSGIServer(('127.0.0.1', {port}), app, log=None).serve_forever()\n"),
    "twisted": ("from twisted.internet import reactor\nfrom twisted.web.server import Site\n"
                "from twisted.web.wsgi import WSGIResource\nreactor.suggestThreadPoolSize(40)\n"
                "reactor.listenTCP({port}, Site(WSGIResource(reactor, reactor.getThreadPool(), app)),"
                " interface='127.0.0.1')\nreactor.run()\n"),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:  # a real answer, not just a listening port (Apache listens before it serves)
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server not listening after 20 s")


def measure(backend: str) -> dict[str, str]:
    state = tempfile.mkdtemp(prefix="wlr-bare-")
    os.chmod(state, 0o777)  # mod_wsgi runs the app as www-data
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")}
    env["RELIABILITY_STATE_DIR"] = state
    port = _free_port()
    if backend in BARE:
        code = "from tests.reliability.app import app\n" + BARE[backend].format(port=port)
        command = [sys.executable, "-c", code]
    else:
        command = [sys.executable, "-m", "launcher", "--backend", backend, "--bind", f"127.0.0.1:{port}",
                   "--threads", "40", "tests.reliability.app:app"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait(port, proc)
        results = run_corpus(("127.0.0.1", port), state, PROBES, parallel=32)
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    return {name: r.outcome + (" +hidden" if r.smuggled else "") for name, r in results.items()}


def main(argv: list[str]) -> int:
    from launcher.registry import list_backends

    out = ""
    if "--json" in argv:
        at = argv.index("--json")
        out = argv[at + 1]
        argv = argv[:at] + argv[at + 2:]
    names = argv or [b.name for b in list_backends() if b.installed and b.protocol == "http"]
    table = {name: measure(name) for name in names}
    width = max(len(p.name) for p in PROBES)
    print(f"{'probe':<{width}}  " + "  ".join(f"{n:<16}" for n in names))
    for probe in PROBES:
        print(f"{probe.name:<{width}}  " + "  ".join(f"{table[n][probe.name]:<16}" for n in names))
    bad = {n: sum(1 for p in PROBES if not p.ok and table[n][p.name].startswith(("reached", "answered", "open")))
           for n in names}
    hidden = {n: sum(1 for v in table[n].values() if "+hidden" in v) for n in names}
    print(f"{'malformed served':<{width}}  " + "  ".join(f"{bad[n]:<16}" for n in names))
    print(f"{'hidden reached app':<{width}}  " + "  ".join(f"{hidden[n]:<16}" for n in names))
    if out:
        Path(out).write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

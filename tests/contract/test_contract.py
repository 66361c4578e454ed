"""Every contract check against every installed HTTP backend, in four variants.

One server per (backend, variant), module-scoped; each check is its own test.  With xdist use
``-n auto --dist loadgroup`` so one server's checks stay on one worker.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.checks import CHECKS, DIRECT_EXPECT, Target, check_id
from tests.support import (
    backend_attr,
    backend_names,
    contract_args,
    require_backend,
    serve_env,
    short_tmpdir,
    start_serve,
)

pytestmark = pytest.mark.server

ROOT_PATH = "/yourapplication"

# variant -> (extra launcher args, bind over a unix socket?, mount prefix, extra expectations)
VARIANTS: dict[str, tuple[list[str], bool, str, frozenset[str]]] = {
    "tcp": ([], False, "", frozenset()),
    "workers2": (["--workers", "2"], False, "", frozenset({"multiprocess"})),
    "unix": ([], True, "", frozenset()),
    "rootpath": (["--root-path", ROOT_PATH], False, ROOT_PATH, frozenset()),
}

# Capabilities a backend is known NOT to have (removed from DIRECT_EXPECT for it), e.g.
# {"somebackend": {"chunked_request"}}.  Keep it empty unless the backend really cannot.
BACKEND_EXPECT_DROP: dict[str, set[str]] = {}

# Checks a backend cannot pass by design, with the reason (deselected at collection, not skipped).
BACKEND_CHECK_DROP: dict[str, dict[str, str]] = {
    "mod_wsgi": {
        "check_error_after_body_started": "in daemon mode the Apache child finishes the chunked body when the"
                                          " daemon's socket closes; only embedded mode withholds the last chunk",
    },
}

# Other ways to run a backend, each through the whole suite: flavour -> (extra args, capabilities
# it cannot have, and why).  gunicorn's sync worker closes the connection after every response and
# serves one request at a time per worker, by design.
FLAVOURS: dict[str, dict[str, tuple[list[str], frozenset[str]]]] = {
    "gunicorn": {
        "sync": (["-o", "worker_class=sync"], frozenset({"keepalive", "concurrency"})),
        "gevent": (["-o", "worker_class=gevent"], frozenset()),
    },
}

PARAMS = [
    pytest.param((backend, flavour, variant), id=f"{backend}{'.' + flavour if flavour else ''}-{variant}",
                 marks=pytest.mark.xdist_group(f"contract-{backend}-{flavour}-{variant}"))
    for backend in backend_names("http")
    for flavour in ["", *FLAVOURS.get(backend, {})]
    for variant in VARIANTS
    # A server that cannot listen on a unix socket refuses the bind: test_lifecycle asserts that.
    if not (VARIANTS[variant][1] and not backend_attr(backend, "unix_sockets"))
]


@pytest.fixture(scope="module", params=PARAMS)
def target(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    backend, flavour, variant = request.param
    require_backend(backend)
    extra, unix, prefix, flags = VARIANTS[variant]
    flavour_args, flavour_drop = FLAVOURS.get(backend, {}).get(flavour, ([], frozenset()))
    extra = [*flavour_args, *extra]
    work = tmp_path_factory.mktemp(f"contract-{backend}-{variant}")
    # Where the app records close() calls: reachable by a server running as another user (Apache's
    # www-data), which pytest's own 0700 base directory is not.
    state = Path(tempfile.mkdtemp(prefix="contract-state-", dir="/tmp"))
    state.chmod(0o1777)
    sock_dir = short_tmpdir() if unix else None
    bind = f"unix:{sock_dir}/contract.sock" if sock_dir else "127.0.0.1:0"
    env = serve_env(CONTRACT_STATE_DIR=str(state))
    try:
        server = start_serve(contract_args(backend, bind, *extra), env=env, tmp_path=work)
        expect = (DIRECT_EXPECT - BACKEND_EXPECT_DROP.get(backend, set()) - flavour_drop) | flags
        try:
            yield Target(address=server.address, prefix=prefix, expect=expect,
                         label=f"{backend}{'.' + flavour if flavour else ''}-{variant}")
        finally:
            server.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)
        if sock_dir is not None:
            shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_contract(target: Target, check: Any) -> None:
    check(target)


def impossible_items(items: list[pytest.Item]) -> list[pytest.Item]:
    """Items whose check needs a capability its flavour is known not to have (FLAVOURS,
    BACKEND_EXPECT_DROP): deselected at collection, so CI runs no skipped checks."""
    dropped = []
    for item in items:
        params = getattr(item, "callspec", None)
        if params is None or "target" not in params.params or "check" not in params.params:
            continue
        backend, flavour, _ = params.params["target"]
        check = params.params["check"]
        needs = getattr(check, "requires", frozenset())
        cannot = FLAVOURS.get(backend, {}).get(flavour, ([], frozenset()))[1] | BACKEND_EXPECT_DROP.get(backend, set())
        if needs & cannot or getattr(check, "__name__", "") in BACKEND_CHECK_DROP.get(backend, {}):
            dropped.append(item)
    return dropped

"""Proxy trust with an allow-list that does not hold the peer: the forwarded headers are stripped and
REMOTE_ADDR stays the real peer.  (The trusted peer, the right-most untrusted address and
--forwarded-host-header are checked against the corpus server in test_corpus.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.conftest import expect, record, serve_app
from tests.support import http_request

pytestmark = pytest.mark.server


def test_forwarded_headers_from_outside_the_allow_list_are_stripped(request: pytest.FixtureRequest, backend: str,
                                                                    tmp_path: Path) -> None:
    expect(request, backend, "proxy_not_allowed")
    served = serve_app(backend, "--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8", tmp_path=tmp_path)
    try:
        reply = http_request(served.address, "GET", "/whoami", [
            ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Prefix", "/evil"), ("Forwarded", "for=203.0.113.7")], timeout=10)
        assert reply.status == 200, reply.describe()
        seen = reply.json()
        record("proxy trust", backend, "allow 10.0.0.0/8, REMOTE_ADDR", seen["REMOTE_ADDR"])
        assert seen["REMOTE_ADDR"] == "127.0.0.1", seen
        assert seen["wsgi.url_scheme"] == "http" and seen["SCRIPT_NAME"] == "", seen
        assert seen["HTTP_HOST"] != "evil.example", seen
        assert seen["headers"] == {}, seen
    finally:
        served.stop()

"""What each backend is known not to do yet, and why: every entry turns its test into a strict xfail.

Strict: when the backend's author fixes it, the test passes, pytest reports XPASS as a failure,
and the entry must be removed here.  Nothing is skipped silently.

Keys are corpus probe names (tests/reliability/corpus.py) or the check names the tests pass to
``expect()`` (``slow_head``, ``cut_off``, ``unix_mode``...).  Measured with gunicorn 27.0.1,
tornado 6.6.1, pyuwsgi 2.0.30, mod_wsgi 6.1.1 on Apache 2.4 (November 2026).  waitress, gevent
and twisted have no entry: the launcher's hygiene layer, limits and head timer are wired into them.
"""

from __future__ import annotations

from tests.reliability.corpus import BY_NAME

#: A fix that covers most head-level gaps of a server whose parser is lax: check the raw head with
#: the launcher's shared validator before the server acts on it, as backends/waitress.py,
#: gevent.py and twisted.py do.
HYGIENE = "launcher.hygiene.check_raw_head (or check_head) on the request head, answering error_response() and closing"


def _served(probe: str, server: str) -> str:
    return f"{server} serves a request with {BY_NAME[probe].what}; needs {HYGIENE}"


def _served_hidden(probe: str, server: str) -> str:
    return (f"{server} serves a request with {BY_NAME[probe].what} and keeps the connection: the request "
            f"sent behind it reaches the app too; needs {HYGIENE}")


def _not_honoured(option: str, how: str) -> str:
    return f"--{option} is not honoured (not in supports, so serve refuses it): {how}"


GUNICORN: dict[str, str] = {}

TORNADO: dict[str, str] = {}

UWSGI: dict[str, str] = {
    "underscore_cl": "uWSGI serves the request with Content_Length and leaves the connection open: it folds the "
                     "name into HTTP_CONTENT_LENGTH, so environ cannot tell it from a real one; needs " + HYGIENE,
    "underscore_xff": "uWSGI folds X_Forwarded_For into HTTP_X_FORWARDED_FOR (merged with a real header): environ "
                      "cannot tell them apart; needs " + HYGIENE,
    "chunk_nonhex": "uWSGI's chunked reader hands the app a body for chunk size 'zz' (200); needs strict chunk "
                    "framing or a front proxy",
    "chunk_0x": "uWSGI's chunked reader takes chunk size '0x5' (200)",
    "chunk_too_long": "uWSGI's chunked reader takes chunk data longer than its size (200)",
    "ok_pipelined": "uWSGI's --http-socket answers the first of two pipelined requests and closes: the second is "
                    "lost (use --http11-socket, or keep uwsgi behind a proxy)",
    "ok_chunk_extension": "uWSGI's chunked reader fails on a chunk extension (5;name=value): the app's read fails, "
                          "500; RFC 9112 7.1.1: MUST ignore unknown extensions",
    "slow_head": _not_honoured("header-timeout", "no head timer: a trickled head held the connection past 8 s "
                               "(uWSGI's socket timeout is per read, so a head trickled faster is never cut)"),
    "stalled_body": _not_honoured("header-timeout", "uWSGI itself closed a stalled body after 1 s here (its "
                                  "socket timeout follows --keepalive); not mapped while a trickled head is not cut"),
    "silent_connection": _not_honoured("header-timeout", "uWSGI closed a silent connection after 1 s (--keepalive)"),
}

MOD_WSGI: dict[str, str] = {}

KNOWN: dict[str, dict[str, str]] = {
    "gunicorn": GUNICORN,
    "tornado": TORNADO,
    "uwsgi": UWSGI,
    "mod_wsgi": MOD_WSGI,
}


def reason(backend: str, check: str) -> str:
    return KNOWN.get(backend, {}).get(check, "")

"""What each backend is known not to do yet, and why: every entry turns its test into a strict xfail.

Strict: when the backend's author fixes it, the test passes, pytest reports XPASS as a failure,
and the entry must be removed here.  Nothing is skipped silently.

Keys are corpus probe names (tests/reliability/corpus.py) or the check names the tests pass to
``expect()`` (``slow_head``, ``cut_off``, ``unix_mode``...).  Measured with gunicorn 27.0.1,
tornado 6.6.1, pyuwsgi 2.0.30, mod_wsgi 6.1.1 on Apache 2.4.71 (November 2026).  Only uWSGI has
entries left: two underscore look-alikes its C parser folds before any code of ours can see them.
"""

from __future__ import annotations

GUNICORN: dict[str, str] = {}

TORNADO: dict[str, str] = {}

UWSGI: dict[str, str] = {
    "underscore_cl": "uWSGI takes Content_Length: N for the Content-Length (200, the connection kept, the hidden "
                     "request read as the body): http_header_to_cgi() (proto/http.c) upper-cases a field name and "
                     "turns '-' into '_' in place in its read buffer before any Python code runs, so environ has "
                     "CONTENT_LENGTH=N and no HTTP_CONTENT_LENGTH (measured) and the raw name is nowhere (the entry "
                     "file reaches the raw body, not the raw head); the HTTP router (--http) folds names the same "
                     "way. Fixed only by a front proxy that drops names with '_' (nginx does)",
    "underscore_xff": "uWSGI folds X_Forwarded_For into HTTP_X_FORWARDED_FOR, one value with a real "
                      "X-Forwarded-For ('1.1.1.1, 2.2.2.2', measured): the same in-place folding in "
                      "http_header_to_cgi(), then one entry per folded name, so neither environ nor uWSGI's buffer "
                      "keeps the raw name; served 200 (nothing pipelined behind such a request is served: the "
                      "connection closes). Fixed only by a front proxy that drops names with '_' (nginx does)",
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

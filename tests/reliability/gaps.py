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


GUNICORN = {
    "underscore_cl": (
        "gunicorn drops Content_Length (header_map='drop'), frames no body and reads the body as the next "
        "request: the request hidden in it reaches the app. Needs the raw-head check (a "
        "gunicorn.http.message.Request subclass whose parse() runs launcher.hygiene.check_raw_head on the "
        "request line and header bytes, installed as RequestParser.mesg_class) or -o header_map=refuse "
        "(which also refuses harmless names such as X-Custom_Thing)"),
    "underscore_xff": "gunicorn drops X_Forwarded_For (header_map='drop') and serves the request instead of a 400;"
                      " same fix as underscore_cl",
    "no_host": "gunicorn serves an HTTP/1.1 request without Host (RFC 9112 3.2: 400); needs check_head",
    "absolute_form": "gunicorn serves absolute-form targets (GET http://evil.example/...); the launcher's rule is 400"
                     " (not a proxy); needs check_head",
    "chunk_overflow": (
        "gunicorn takes a 33-hex-digit chunk size and waits for that many bytes, the app blocked in "
        "wsgi.input.read: needs --limit-request-body (launcher.middleware.BodyLimit caps what the app can "
        "read, not what gunicorn waits for) and a body read timeout (--header-timeout as a socket timeout)"),
    "body_under": _not_honoured("limit-request-body", "gunicorn has no body limit: wrap the app in "
                                "launcher.middleware.BodyLimit(app, opts.limit_request_body) in the worker and add "
                                "limit_request_body to supports"),
    "slow_head": _not_honoured("header-timeout", "gunicorn has no head timer: a head trickled a byte every 0.25 s "
                               "held the connection (and a gthread thread) past 8 s; needs a deadline on the "
                               "request-head read in the worker (e.g. a socket timeout per read plus a total "
                               "deadline checked between reads)"),
    "stalled_body": _not_honoured("header-timeout", "a body that stops is waited for until --timeout kills the "
                                  "worker; needs a socket timeout on body reads"),
    "silent_connection": _not_honoured("header-timeout", "a connection that sends nothing was held past 4 s with "
                                       "--keepalive 1 (about 6 s measured)"),
}
for _key in ("body_over", "chunked_body_under", "chunked_body_over"):
    GUNICORN[_key] = GUNICORN["body_under"]

TORNADO = {
    "te_http10": _served_hidden("te_http10", "tornado") + " (RFC 9112 6.1: faulty framing, close)",
    "underscore_cl": (
        "backends/tornado.py's environ maps the header Content_Length to CONTENT_LENGTH (name.replace('-', "
        "'_').upper()) while tornado framed no body: the app reads short (500) and the body is served as the "
        "next request. Skip or refuse header names with '_' (check_head in Request.headers_received)"),
    "bare_lf_in_head": "tornado takes header lines ended by a bare LF (a front proxy may split them differently); the "
                       "launcher's rule is 400; needs check_raw_head on the raw head (HTTP1Connection._parse_headers "
                       "gets it)",
    "underscore_xff": "tornado passes X_Forwarded_For as HTTP_X_FORWARDED_FOR; needs check_head in "
                      "Request.headers_received",
    "no_host": "the backend's Request.headers_received answers 400 (HTTPInputError) but leaves the connection open:"
               " the request behind it is served. The 400 must close the connection (Connection: close, no more "
               "reads)",
    "absolute_form": "tornado serves absolute-form targets; needs check_head in Request.headers_received",
    "star_get": "tornado serves GET *; needs check_head in Request.headers_received",
    "huge_request_line": "tornado limits only the whole head (max_header_size 64 KiB): a 20 kB request line is "
                         "served; needs --limit-request-line (check_head with Limits.from_options)",
    "huge_header": "a 20 kB header field is served (no per-field limit); needs --limit-request-field-size",
    "many_headers": "600 header fields are served (no field count limit); needs --limit-request-fields",
    "ok_chunk_extension": "tornado answers 400 to a chunk extension (5;name=value); RFC 9112 7.1.1: a recipient "
                          "MUST ignore unknown extensions",
    "line_under": _not_honoured("limit-request-line", "tornado only has max_header_size for the whole head; "
                                "check each line with check_head(..., Limits.from_options(opts)) in "
                                "Request.headers_received"),
    "fields_under": _not_honoured("limit-request-fields", "same fix as --limit-request-line"),
    "field_size_under": _not_honoured("limit-request-field-size", "same fix as --limit-request-line"),
    "body_under": "served, but tornado then serves the request sent after it although that request said "
                  "Connection: close (RFC 9112 9.6: MUST NOT process further requests on the connection)",
    "stalled_body": "--header-timeout only sets tornado's head timer (idle_connection_timeout); a stalled body is "
                    "held forever: map --header-timeout to body_timeout as well",
}
TORNADO["two_hosts"] = TORNADO["no_host"]
TORNADO["line_over"] = TORNADO["line_under"]
TORNADO["fields_over"] = TORNADO["fields_under"]
TORNADO["field_size_over"] = TORNADO["field_size_under"]
TORNADO["chunked_body_under"] = TORNADO["body_under"]

UWSGI_SERVED = (
    "absolute_form", "bare_lf_in_head", "cl_negative", "cl_underscore", "ctl_in_header", "del_in_header", "http09",
    "huge_header", "huge_request_line", "invalid_method", "no_host", "nul_in_header", "nul_in_target", "obs_fold",
    "space_before_colon", "space_in_header_name", "space_in_target", "star_get", "te_http10",
    "te_space_before_colon_cl", "two_hosts", "underscore_xff", "version_2", "version_garbage",
)
UWSGI: dict[str, str] = {probe: _served(probe, "uWSGI's --http-socket parser") for probe in UWSGI_SERVED}
UWSGI.update({
    "underscore_cl": "uWSGI serves the request with Content_Length and leaves the connection open; needs " + HYGIENE,
    "chunk_nonhex": "uWSGI's chunked reader hands the app a body for chunk size 'zz' (200); needs strict chunk "
                    "framing or a front proxy",
    "chunk_0x": "uWSGI's chunked reader takes chunk size '0x5' (200)",
    "chunk_too_long": "uWSGI's chunked reader takes chunk data longer than its size (200)",
    "ok_pipelined": "uWSGI's --http-socket answers the first of two pipelined requests and closes: the second is "
                    "lost (use --http11-socket, or keep uwsgi behind a proxy)",
    "ok_chunk_extension": "uWSGI's chunked reader fails on a chunk extension (5;name=value): the app's read fails, "
                          "500; RFC 9112 7.1.1: MUST ignore unknown extensions",
    "line_under": _not_honoured("limit-request-line", "uWSGI has no request-line limit apart from buffer-size "
                                "(4 KiB for the whole head); check_head in the backend, or map to buffer-size"),
    "fields_under": _not_honoured("limit-request-fields", "uWSGI drops fields past its vector size ('max vec size "
                                  "reached. skip this var') instead of refusing"),
    "field_size_under": _not_honoured("limit-request-field-size", "no per-field limit in uWSGI"),
    "slow_head": _not_honoured("header-timeout", "no head timer: a trickled head held the connection past 8 s "
                               "(uWSGI has --http-timeout / socket-timeout to map it to)"),
    "stalled_body": _not_honoured("header-timeout", "uWSGI itself closed a stalled body after 1 s here (its "
                                  "socket timeout follows --keepalive), so mapping it is what is missing"),
    "silent_connection": _not_honoured("header-timeout", "uWSGI closed a silent connection after 1 s (--keepalive)"),
    "cut_off": "reports '1 request(s) cut off' for 2 requests cut off (counts busy workers, not requests)",
})
UWSGI["line_over"] = UWSGI["line_under"]
UWSGI["fields_over"] = UWSGI["fields_under"]
UWSGI["field_size_over"] = UWSGI["field_size_under"]

APACHE = "Apache (mod_wsgi-express)"
MOD_WSGI = {
    "cl_te": f"{APACHE} frames Content-Length + Transfer-Encoding: chunked by the chunks and closes the connection "
             "(RFC 9112 6.1 allows it, nothing behind it reaches the app) instead of the launcher's 400",
    "te_cl": "as cl_te, with the headers in the other order",
    "te_leading_space_cl": "as cl_te (Transfer-Encoding:  chunked with Content-Length)",
    "te_obs_fold_cl": "as cl_te: Apache unfolds 'Transfer-Encoding:\\r\\n chunked' and frames by the chunks",
    "te_http10": _served_hidden("te_http10", APACHE),
    "underscore_cl": _served_hidden("underscore_cl", APACHE) + " (mod_wsgi drops the underscore name from environ)",
    "chunk_size_space": f"{APACHE} takes chunk size '5 ' (trailing space) and serves the request behind it too",
    "obs_fold": _served_hidden("obs_fold", APACHE) + " (HttpProtocolOptions Strict does not refuse folding)",
    "underscore_xff": _served_hidden("underscore_xff", APACHE),
    "version_2": _served_hidden("version_2", APACHE),
    "http09": f"{APACHE} answers an HTTP/0.9 request (a bare body, no status line): HttpProtocolOptions Require1.0",
    "absolute_form": _served_hidden("absolute_form", APACHE),
    "line_over": "--limit-request-line is in supports and the backend writes LimitRequestLine 2000 to its "
                 "--include-file, yet a 2100-byte request line is served",
    "fields_over": "--limit-request-fields is in supports but 40 fields are served with --limit-request-fields 30",
    "field_size_over": "--limit-request-field-size is in supports but a 1100-byte field is served with 1000",
    "idle_keepalive": "with --keepalive 1 the connection is closed right after the first response (keep-alive off)",
    "stalled_body": "--header-timeout is in supports (passed as mod_wsgi-express --header-timeout) but a stalled "
                    "body is held past 8 s: the body read timeout is not set from it",
    "silent_connection": "--header-timeout is in supports but a silent connection is held past 4 s",
    "cut_off": "reports '1 request(s) cut off' for 2 requests cut off (counts busy processes, not requests)",
    "unix_mode": "takes_sockets is True but the backend refuses unix: binds (Apache binds its own TCP port): set "
                 "takes_sockets = False, or serve unix sockets",
    "user": "--user nobody: the app runs as www-data (uid 33); Apache's User/Group must come from --user/--group",
}

KNOWN: dict[str, dict[str, str]] = {
    "gunicorn": GUNICORN,
    "tornado": TORNADO,
    "uwsgi": UWSGI,
    "mod_wsgi": MOD_WSGI,
}


def reason(backend: str, check: str) -> str:
    return KNOWN.get(backend, {}).get(check, "")

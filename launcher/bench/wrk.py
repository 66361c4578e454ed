"""wrk: its command line, the Lua script that sets the request and reports JSON, the parser.

wrk's own text output rounds and changes units ("7.12k", "1.62ms"), so the figures come from a
Lua ``done()`` hook printing one JSON line after a marker.  The text "Requests/sec:" line is also
read, as a cross-check kept in the results.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

from launcher.errors import LauncherError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: The line prefix of the JSON summary printed by the ``done()`` hook.
MARKER = "SERVE-BENCH-JSON "

_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n%s{"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, ' ..
    '"errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f}, ' ..
    '"latency_us": {"min": %.0f, "mean": %.1f, "stdev": %.1f, "max": %.0f, ' ..
    '"p50": %.0f, "p90": %.0f, "p99": %.0f, "p999": %.0f}}\n',
    "MARKER", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
""".replace('"MARKER"', json.dumps(MARKER))


class LoadGenError(LauncherError):
    """The load generator could not run or its output could not be read."""


def find() -> str | None:
    """Path of the wrk binary, or None."""
    return shutil.which("wrk")


def version(path: str) -> str:
    """wrk's version line, e.g. "wrk 4.1.0 [epoll]" ("" when it cannot be read)."""
    try:
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0].strip() if first else ""


def script(method: str = "GET", body_size: int = 0) -> str:
    """The Lua script: the request to send (method, body) and the JSON ``done()`` hook."""
    lines = ["-- written by serve bench: sets the request, reports the summary as JSON"]
    if method != "GET":
        lines.append(f'wrk.method = "{method}"')
    if body_size:
        lines.append(f'wrk.body = string.rep("x", {int(body_size)})')
        lines.append('wrk.headers["Content-Type"] = "application/octet-stream"')
    return "\n".join(lines) + "\n" + _DONE


def argv(wrk: str, url: str, *, connections: int, threads: int, duration: int, timeout: int,
         script_path: str) -> list[str]:
    """wrk's command line (HTTP/1.1 keep-alive is wrk's only mode)."""
    return [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", f"--timeout={timeout}s",
            "-s", script_path, url]


_RPS = re.compile(r"^Requests/sec:\s*([0-9.]+)", re.MULTILINE)


def parse(output: str) -> dict[str, Any]:
    """The summary printed by the ``done()`` hook, plus ``text_rps`` from wrk's own text.

    Raises :class:`LoadGenError` when there is no summary (wrk failed before the end of the run).
    """
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            try:
                data: dict[str, Any] = json.loads(line[len(MARKER):])
            except ValueError as exc:
                raise LoadGenError(f"wrk printed a summary that is not JSON ({exc}): {line[:200]}") from None
            break
    else:
        tail = " | ".join(output.strip().splitlines()[-3:]) or "no output"
        raise LoadGenError(f"wrk printed no summary: {tail}")
    match = _RPS.search(output)
    data["text_rps"] = float(match.group(1)) if match else None
    return data

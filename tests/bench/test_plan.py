"""Validation of ``serve bench`` flags, before anything starts: no server, no wrk."""

from __future__ import annotations

import subprocess
import sys

import pytest

from launcher.bench import plan, workloads
from launcher.cli import main
from launcher.errors import BackendError, OptionError
from launcher.registry import BackendInfo
from tests.support import REPO


def info(name: str, installed: bool = True, protocol: str = "http") -> BackendInfo:
    return BackendInfo(name=name, target=f"backends.{name}:X", installed=installed, version="1.0", protocol=protocol,
                       extra=name, distribution=name, supports=frozenset(), min_version="", error="")


INFOS = [info("waitress"), info("gunicorn"), info("tornado", installed=False), info("fastcgi", protocol="fastcgi"),
         info("cgi", protocol="cgi"), info("other", protocol="scgi")]


@pytest.fixture
def nginx_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """The nginx and lighttpd fronts look runnable, whatever this machine has (selection starts nothing)."""
    from launcher.bench import front_lighttpd, front_nginx

    monkeypatch.setattr(front_nginx, "find_binary", lambda: "/usr/sbin/nginx")
    monkeypatch.setattr(front_lighttpd, "find_binary", lambda: "/usr/sbin/lighttpd")
    monkeypatch.setattr(front_nginx, "find_params", lambda name: f"/etc/nginx/{name}")


@pytest.mark.parametrize(("text", "seconds"), [("10", 10), ("10s", 10), ("2m", 120), ("3000ms", 3), ("1S", 1)])
def test_durations(text: str, seconds: int) -> None:
    assert plan.parse_duration(text, "--duration") == seconds


@pytest.mark.parametrize("text", ["", "abc", "-1s", "1.5s", "500ms", "0s", "10h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(OptionError, match="--duration"):
        plan.parse_duration(text, "--duration")


def test_zero_warmup_is_allowed() -> None:
    assert plan.parse_duration("0", "--warmup", allow_zero=True) == 0


def test_concurrency_list_is_sorted_and_unique() -> None:
    assert plan.parse_concurrency("64,1, 16,64") == (1, 16, 64)


@pytest.mark.parametrize("text", ["", "0", "1,x", "-4", "1.5", "100000"])
def test_bad_concurrency(text: str) -> None:
    with pytest.raises(OptionError, match="--concurrency"):
        plan.parse_concurrency(text)


def test_all_takes_installed_backends_and_fastcgi_behind_nginx_but_not_cgi_and_says_why(
        nginx_here: None) -> None:
    chosen = plan.select_backends("all", INFOS)
    assert chosen.names == ["waitress", "gunicorn", "fastcgi"]
    assert chosen.protocols == {"fastcgi": "fastcgi"}
    assert chosen.skipped[1:] == ["other speaks scgi: not benchmarked: no front server adapter for this protocol"]
    assert chosen.skipped[0].startswith("cgi: not part of 'all': a new Python process per request"), chosen.skipped
    named = plan.select_backends("waitress,cgi", INFOS)  # asked for by name, it runs
    assert named.names == ["waitress", "cgi"] and named.protocols == {"cgi": "cgi"}
    assert any("tornado" in note for note in chosen.notes)


def test_without_nginx_fastcgi_is_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from launcher.bench import front_nginx

    monkeypatch.setattr(front_nginx, "find_binary", lambda: "")
    chosen = plan.select_backends("waitress,fastcgi", INFOS)
    assert chosen.names == ["waitress"] and chosen.protocols == {}
    assert chosen.skipped == ["fastcgi speaks fastcgi: not benchmarked: its front server needs nginx, which is not"
                              " installed (Debian: apt-get install nginx)"]


def test_named_backends_keep_their_order_without_duplicates() -> None:
    assert plan.select_backends("gunicorn,waitress,gunicorn", INFOS).names == ["gunicorn", "waitress"]


def test_unknown_backend_names_the_closest() -> None:
    with pytest.raises(OptionError, match="did you mean 'waitress'"):
        plan.select_backends("waitres", INFOS)


def test_a_named_backend_that_is_not_installed_is_an_error() -> None:
    with pytest.raises(BackendError, match=r"wsgi-launcher\[tornado\]"):
        plan.select_backends("waitress,tornado", INFOS)


def test_without_lighttpd_cgi_is_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from launcher.bench import front_lighttpd

    monkeypatch.setattr(front_lighttpd, "find_binary", lambda: "")
    chosen = plan.select_backends("waitress,cgi", INFOS)
    assert chosen.names == ["waitress"] and chosen.protocols == {}
    assert chosen.skipped == ["cgi speaks cgi: not benchmarked: its front server needs lighttpd, which is not"
                              " installed (Debian: apt-get install lighttpd)"]


def test_a_backend_without_a_front_alone_leaves_nothing_to_run() -> None:
    with pytest.raises(OptionError, match="no backend can be benchmarked .other speaks scgi: not benchmarked"):
        plan.select_backends("other", INFOS)


def test_a_backend_run_by_its_front_gets_no_bind_workers_or_threads() -> None:
    notes: list[str] = []
    opts = plan.server_options("examples.hello:app", "cgi", None, workers=2, threads=4, options={}, pythonpath="",
                               notes=notes, run_by_front=True)
    assert not opts.is_set("bind") and not opts.is_set("workers") and not opts.is_set("threads")
    assert notes == ["cgi is run by its front server, one process per request: run without --workers and"
                     " --threads"]


def test_backend_options_for_all_or_one() -> None:
    per = plan.parse_backend_options(["a=1", "gunicorn:worker_class=gthread"], ["waitress", "gunicorn"])
    assert per == {"waitress": {"a": "1"}, "gunicorn": {"a": "1", "worker_class": "gthread"}}
    with pytest.raises(OptionError, match="not one of the benchmarked"):
        plan.parse_backend_options(["tornado:x=1"], ["waitress"])
    with pytest.raises(OptionError, match="KEY=VALUE"):
        plan.parse_backend_options(["novalue"], ["waitress"])


def test_workloads_are_known_by_name() -> None:
    assert workloads.get("echo").method == "POST"
    assert workloads.get("echo").body_size == 64 * 1024
    assert workloads.get("JSON").app == "benchmarks.apps:json"
    with pytest.raises(OptionError, match="choose one of: hello, json"):
        workloads.get("plaintext")


# --------------------------------------------------------------------------- the command's errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workload", "hello", "--backends", "nosuch"], "unknown backend 'nosuch'"),
        (["--workload", "hello", "--concurrency", "1,x"], "--concurrency: 'x'"),
        (["--workload", "nosuch"], "unknown workload 'nosuch'"),
        (["--workload", "hello", "--duration", "ten"], "--duration: bad duration 'ten'"),
        (["--workload", "hello", "--rounds", "0"], "--rounds"),
        (["--workload", "hello", "--path", "x"], "must start with '/'"),
        (["app:app", "--workload", "hello"], "not both"),
        ([], "no app given"),
        (["--workload", "hello", "--backends", "waitress", "-o", "nosuch=1"], "nosuch"),
        (["--workload", "hello", "--json", "/no/such/dir/x.json"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(args: list[str], message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", *args])
    err = capsys.readouterr().err
    assert code != 0
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_help_lists_the_workloads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    for name in workloads.WORKLOADS:
        assert f"  {name} " in out


def test_import_launcher_and_serve_help_do_not_import_the_bench() -> None:
    code = (
        "import sys, contextlib, io\n"
        "import launcher\n"
        "from launcher.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('launcher.bench') or m in ('rich', 'matplotlib'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

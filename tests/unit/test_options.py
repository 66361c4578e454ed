"""Options declared once: parsing, precedence, unknown keys, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.cli import parse_run_args
from launcher.errors import ConfigFileError, OptionError
from launcher.options import OPTIONS, Bind, options_table, resolve

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "kind", "host", "port", "path", "mode"),
    [
        ("127.0.0.1:8000", "tcp", "127.0.0.1", 8000, "", None),
        ("[::1]:0", "tcp", "::1", 0, "", None),
        ("localhost:5000", "tcp", "localhost", 5000, "", None),
        ("9000", "tcp", "127.0.0.1", 9000, "", None),
        (":8080", "tcp", "0.0.0.0", 8080, "", None),
        ("unix:/tmp/app.sock", "unix", "", 0, "/tmp/app.sock", None),
        ("unix:/tmp/app.sock:0666", "unix", "", 0, "/tmp/app.sock", 0o666),
    ],
)
def test_bind_forms(text: str, kind: str, host: str, port: int, path: str, mode: int | None) -> None:
    bind = Bind.parse(text)
    assert (bind.kind, bind.host, bind.port, bind.path, bind.mode) == (kind, host, port, path, mode)


def test_bind_fd_and_round_trip() -> None:
    assert Bind.parse("fd://3").fd == 3
    for text in ("127.0.0.1:8000", "[::1]:0", "unix:/tmp/x.sock:0660", "fd://5"):
        assert str(Bind.parse(text)) == text


@pytest.mark.parametrize("bad", ["", "host:port", "1.2.3.4:70000", "::1:80", "fd://x", "unix:", "[::1", "a b:80"])
def test_bad_bind_is_one_line_error(bad: str) -> None:
    with pytest.raises(OptionError) as info:
        Bind.parse(bad)
    assert "\n" not in str(info.value)


def test_precedence_cli_over_env_over_file_over_default(tmp_path: Path) -> None:
    (tmp_path / "serve.toml").write_text('app = "from.file:app"\nworkers = 3\nthreads = 7\nkeepalive = 9\n')
    env = {"SERVE_WORKERS": "5", "SERVE_THREADS": "6"}
    opts = resolve(None, cli={"workers": "2"}, env=env, cwd=str(tmp_path))
    assert opts.app == "from.file:app"
    assert opts.workers == 2  # CLI beats env and file
    assert opts.threads == 6  # env beats file
    assert opts.keepalive == 9.0  # file beats default
    assert opts.graceful_timeout == 30.0  # default
    assert opts.sources == {"workers": "cli", "threads": "env", "keepalive": "file"}
    assert opts.is_set("keepalive") and not opts.is_set("timeout")


def test_pyproject_tool_serve_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname="x"\n[tool.serve]\nbackend = "gevent"\nbind = ["[::1]:0", "unix:/tmp/s.sock"]\n'
        '[tool.serve.option]\nworker_class = "gthread"\n'
    )
    opts = resolve("m:app", env={}, cwd=str(tmp_path))
    assert opts.backend == "gevent"
    assert [str(b) for b in opts.bind] == ["[::1]:0", "unix:/tmp/s.sock"]
    assert opts.option == {"worker_class": "gthread"}


def test_serve_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.serve]\nworkers = 4\n")
    (tmp_path / "serve.toml").write_text("workers = 2\n")
    assert resolve("m:app", env={}, cwd=str(tmp_path)).workers == 2


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        ("cli", "did you mean 'workers'"),
        ("env", "did you mean 'SERVE_WORKERS'"),
        ("file", "did you mean 'workers'"),
    ],
)
def test_unknown_key_names_closest(source: str, expect: str, tmp_path: Path) -> None:
    cli: dict[str, str] = {}
    env: dict[str, str] = {}
    if source == "cli":
        cli = {"wrokers": "2"}
    elif source == "env":
        env = {"SERVE_WROKERS": "2"}
    else:
        (tmp_path / "serve.toml").write_text("wrokers = 2\n")
    with pytest.raises(OptionError) as info:
        resolve("m:app", cli=cli, env=env, cwd=str(tmp_path))
    assert expect in str(info.value)


def test_bad_values_are_clear() -> None:
    with pytest.raises(OptionError, match="--workers.*at least 1"):
        resolve("m:app", cli={"workers": "0"}, env={}, use_file=False)
    with pytest.raises(OptionError, match="--log-level.*did you mean 'debug'"):
        resolve("m:app", cli={"log_level": "debgu"}, env={}, use_file=False)
    with pytest.raises(OptionError, match="--root-path.*must start with '/'"):
        resolve("m:app", cli={"root_path": "prefix"}, env={}, use_file=False)
    with pytest.raises(OptionError, match="not an IP address or CIDR"):
        resolve("m:app", cli={"forwarded_allow_ips": "10.0.0.0/8,nonsense"}, env={}, use_file=False)
    with pytest.raises(OptionError, match="KEY=VALUE"):
        resolve("m:app", cli={"option": ["novalue"]}, env={}, use_file=False)
    with pytest.raises(ConfigFileError, match="not found"):
        resolve("m:app", env={}, config="/nonexistent/serve.toml")


def test_config_file_type_errors_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "serve.toml").write_text('workers = "many"\n')
    with pytest.raises(OptionError, match="serve.toml, key 'workers'"):
        resolve("m:app", env={}, cwd=str(tmp_path))


def test_seconds_units_and_bools() -> None:
    opts = resolve("m:app", cli={"timeout": "500ms", "keepalive": "2m", "proxy_headers": "yes"}, env={},
                   use_file=False)
    assert opts.timeout == 0.5 and opts.keepalive == 120.0 and opts.proxy_headers is True


def test_frozen_and_replace() -> None:
    opts = resolve("m:app", env={}, use_file=False)
    with pytest.raises(AttributeError):
        opts.workers = 3  # type: ignore[misc]
    changed = opts.replace(workers=3)
    assert changed.workers == 3 and opts.workers == 1 and changed.is_set("workers")


def test_to_argv_round_trips_through_the_cli() -> None:
    cli = {
        "backend": "waitress", "bind": ["127.0.0.1:0", "unix:/tmp/a.sock:0600"], "workers": "2",
        "timeout": "2.5", "proxy_headers": True, "forwarded_allow_ips": "10.0.0.0/8", "umask": "027",
        "option": ["a=1", "b=two"], "access_log": False,
    }
    opts = resolve("pkg.mod:create_app('x')", cli=cli, env={}, use_file=False)
    app, parsed, _ = parse_run_args(opts.to_argv())
    again = resolve(app, cli=parsed, env={}, use_file=False)
    assert again.as_dict() == opts.as_dict()
    assert again.app == opts.app and again.explicit == opts.explicit


def test_every_option_has_help_env_and_a_valid_default() -> None:
    for opt in OPTIONS:
        assert opt.help and opt.env == "SERVE_" + opt.name.upper()
        # the default converts to itself: the declared type and default agree
        if opt.default is not None and opt.kind not in ("kv",):
            assert opt.convert(opt.default, "default") == opt.default


def test_readme_options_table_is_generated_from_the_declarations() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert options_table() in readme, "README options table is stale: paste launcher.options.options_table()"


def test_list_flags_take_comma_lists_and_repeats() -> None:
    opts = resolve("m:app", cli={"forwarded_allow_ips": ["127.0.0.1,unix", "10.0.0.0/8"]}, env={}, use_file=False)
    assert opts.forwarded_allow_ips == ("127.0.0.1", "unix", "10.0.0.0/8")

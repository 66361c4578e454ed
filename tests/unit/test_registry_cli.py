"""Registry and CLI with a fake backend injected: no server is started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import registry
from launcher.cli import main
from launcher.errors import BackendError
from tests.unit.fakes import FakeBackend

REPO = Path(__file__).resolve().parents[2]
NINE = ["waitress", "gunicorn", "gevent", "tornado", "twisted", "fastcgi", "cgi", "uwsgi", "mod_wsgi"]


def test_registry_holds_import_strings_for_the_nine_backends() -> None:
    assert list(registry.BUILTIN) == NINE
    assert all(":" in target and target.startswith("backends.") for target in registry.BUILTIN.values())


def test_unknown_backend_lists_valid_ones() -> None:
    with pytest.raises(BackendError) as info:
        registry.get("tornadoo")
    assert "did you mean 'tornado'" in str(info.value) and "waitress" in str(info.value)


def test_missing_library_names_the_extra(fake_backend: type[FakeBackend]) -> None:
    with pytest.raises(BackendError) as info:
        registry.get("missing")
    assert "pip install 'wsgi-launcher[missing-extra]'" in str(info.value)


def test_entry_point_backends_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_entry_points", lambda: {"thirdparty": "tests.unit.fakes:FakeBackend",
                                                            "waitress": "evil:Shadow"})
    table = registry.import_strings()
    assert table["thirdparty"] == "tests.unit.fakes:FakeBackend"
    assert table["waitress"] == registry.BUILTIN["waitress"]  # a built-in cannot be shadowed


def test_cli_runs_the_fake_backend(fake_backend: type[FakeBackend], clean_env: None, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    ready = tmp_path / "ready.json"
    code = main(["--backend", "fake", "-b", "127.0.0.1:0", "--threads", "3", "-o", "flavour=spicy",
                 "--ready-file", str(ready), "tests.unit.fakes:app"])
    assert code == 0
    (call,) = fake_backend.calls
    assert call["opts"].threads == 3
    assert call["backend_options"] == {"flavour": "spicy", "depth": 1}
    data = json.loads(ready.read_text())
    assert data["backend"] == "fake" and data["addresses"][0]["port"] > 0
    err = capsys.readouterr().err
    assert "fake serving tests.unit.fakes:app at http://127.0.0.1:" in err


def test_bare_serve_app_and_run_subcommand_are_the_same(fake_backend: type[FakeBackend], clean_env: None) -> None:
    assert main(["run", "--backend", "fake", "-b", "127.0.0.1:0", "tests.unit.fakes:app"]) == 0
    assert main(["--backend", "fake", "-b", "127.0.0.1:0", "tests.unit.fakes:app"]) == 0
    assert len(fake_backend.calls) == 2


@pytest.mark.parametrize(
    ("argv", "code", "expect"),
    [
        (["--backend", "fake", "--timeout", "3", "tests.unit.fakes:app"], 2, "cannot honour --timeout"),
        (["--backend", "fake", "-o", "flavor=spicy", "tests.unit.fakes:app"], 2, "did you mean 'flavour'"),
        (["--backend", "fake", "-o", "depth=0", "tests.unit.fakes:app"], 2, "at least 1"),
        (["--backend", "missing", "tests.unit.fakes:app"], 2, "wsgi-launcher[missing-extra]"),
        (["--backend", "fake", "--wrokers", "2", "tests.unit.fakes:app"], 2, "did you mean '--workers'"),
        (["--backend", "fake", "-b", "nonsense:xx", "tests.unit.fakes:app"], 2, "bad port"),
        (["--backend", "fake", "no_such_module_abc:app"], 4, "cannot import module 'no_such_module_abc'"),
        (["--backend", "fake"], 2, "no app given"),
    ],
)
def test_bad_input_is_one_clear_error(fake_backend: type[FakeBackend], clean_env: None, argv: list[str], code: int,
                                      expect: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv[:2], "-b", "127.0.0.1:0", *argv[2:]] if "-b" not in argv else argv) == code
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
    assert fake_backend.calls == []  # nothing started


def test_busy_port_is_one_line(fake_backend: type[FakeBackend], clean_env: None,
                               capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--backend", "fake", "-b", f"127.0.0.1:{port}", "tests.unit.fakes:app"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"serve: error: cannot listen on 127.0.0.1:{port}: address already in use (another server runs " \
                  "there: stop it or pick another port)"


def test_serve_backends_lists_all_nine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in listed] == NINE
    waitress = listed[0]
    assert waitress["installed"] is True and waitress["version"] and waitress["extra"] == "waitress"
    assert "threads" in waitress["supports"]


@pytest.mark.parametrize("code", ["import launcher", "from launcher.cli import build_run_parser; build_run_parser()",
                                  "import launcher.cli, sys; sys.argv=['serve','--help']; launcher.cli.main()"])
def test_core_and_help_import_no_server_library(code: str) -> None:
    probe = (
        f"{code}\nimport sys\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in {'waitress','gunicorn','gevent','tornado','twisted',"
        "'flup','werkzeug','flask','uwsgi','mod_wsgi','rich','matplotlib','watchfiles','typing','dataclasses'}]\n"
        "print('HEAVY', heavy, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert "HEAVY []" in out.stderr, out.stderr


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    from launcher.options import OPTIONS

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for opt in OPTIONS:
        assert opt.flag in out


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="the rule is about running as root")
def test_root_on_a_public_address_needs_user_or_allow_root(fake_backend: type[FakeBackend], clean_env: None,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--backend", "fake", "-b", "0.0.0.0:0", "tests.unit.fakes:app"]) == 2
    assert "refusing to run as root on 0.0.0.0:0" in capsys.readouterr().err
    assert fake_backend.calls == []
    assert main(["--backend", "fake", "-b", "0.0.0.0:0", "--allow-root", "tests.unit.fakes:app"]) == 0
    assert main(["--backend", "fake", "-b", "127.0.0.1:0", "tests.unit.fakes:app"]) == 0

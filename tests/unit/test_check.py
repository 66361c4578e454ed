"""serve check: each diagnosis, on small apps written for the test (no server is started)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from launcher import check
from launcher.cli import main
from launcher.options import resolve


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("SERVE_"):
            monkeypatch.delenv(key)
    return tmp_path


def write_app(directory: Path, body: str) -> str:
    name = f"chk_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'x']\n" + body)
    return name


def levels(findings: list[check.Finding]) -> list[str]:
    return [f.level for f in findings]


def test_all_well(module_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = write_app(module_dir, "")
    assert main(["check", f"{name}:app"]) == 0
    out = capsys.readouterr().out
    assert f"found the WSGI callable '{name}:app': a function {name}.app" in out and "all well" in out


def test_print_at_import_is_fatal_only_where_stdout_is_the_response(module_dir: Path) -> None:
    name = write_app(module_dir, "print('hello from import')\n")
    findings = check._import(resolve(f"{name}:app", env={}, use_file=False))
    assert check.WARN in levels(findings)
    sys.modules.pop(name, None)
    findings = check._import(resolve(f"{name}:app", cli={"backend": "mod_wsgi"}, env={}, use_file=False))
    problem = [f for f in findings if f.level == check.FAIL]
    assert problem and "printed to stdout ('hello from import'" in problem[0].text


def test_app_run_at_import_is_a_problem(module_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = write_app(module_dir, "from wsgiref.simple_server import make_server\n"
                                 "make_server('127.0.0.1', 0, app).serve_forever()\n")
    assert main(["check", f"{name}:app"]) == 1
    assert 'if __name__ == "__main__"' in capsys.readouterr().out


def test_missing_module_and_user_import_error(module_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "no_such_module_chk:app"]) == 1
    assert "cannot import module 'no_such_module_chk'" in capsys.readouterr().out
    name = write_app(module_dir, "import no_such_dependency_chk\n")
    assert main(["check", f"{name}:app"]) == 1
    out = capsys.readouterr().out
    assert "No module named 'no_such_dependency_chk'" in out and "Traceback" in out  # the user's own traceback


def test_symlink_into_site_packages(module_dir: Path) -> None:
    site = module_dir / "site-packages"
    site.mkdir()
    real = module_dir / "real"
    real.mkdir()
    name = write_app(real, "")
    (site / f"{name}.py").symlink_to(real / f"{name}.py")
    sys.path.insert(0, str(site))
    try:
        findings = check._import(resolve(f"{name}:app", env={}, use_file=False))
    finally:
        sys.path.remove(str(site))
    problem = [f for f in findings if f.level == check.FAIL]
    assert problem and "symlink into site-packages" in problem[0].text


def test_library_below_safe_version() -> None:
    class Info:
        name, distribution, extra, installed, version, min_version = "x", "xlib", "x", True, "2.9.1", "3.0.1"

    (finding,) = check._library(Info())
    assert finding.level == check.FAIL and "older than 3.0.1" in finding.text
    Info.version = "3.0.10"
    assert check._library(Info())[0].level == check.OK
    assert check._version_tuple("25.4.1.dev0") == (25, 4, 1)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a directory another user cannot enter")
def test_unreadable_interpreter_path_is_named() -> None:
    import pwd
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(dir="/tmp"))
    os.chmod(base, 0o755)  # only "private" below must block
    private = base / "private"
    (private / "bin").mkdir(parents=True)
    os.chmod(private, 0o700)
    nobody = pwd.getpwnam("nobody")
    blocked = check.unreadable_component(str(private / "bin"), nobody.pw_uid, {nobody.pw_gid})
    assert blocked == str(private)
    os.chmod(private, 0o755)
    assert check.unreadable_component(str(private / "bin"), nobody.pw_uid, {nobody.pw_gid}) == ""
    shutil.rmtree(base)


def test_socket_directory_missing(module_dir: Path) -> None:
    opts = resolve("m:app", cli={"bind": ["unix:/nonexistent-dir-chk/app.sock"]}, env={}, use_file=False)
    (finding,) = check._socket_dirs(opts)
    assert finding.level == check.FAIL and "does not exist" in finding.text


def test_unknown_backend_is_a_problem(module_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--backend", "tornadoo", "m:app"]) == 1
    assert "did you mean 'tornado'" in capsys.readouterr().out



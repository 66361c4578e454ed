"""The lighttpd CGI front of ``serve bench``: the script and site are ``serve config``'s (no lighttpd needed)."""

from __future__ import annotations

from pathlib import Path

from launcher.bench import front_lighttpd, fronts
from launcher.options import resolve


def test_cgi_has_the_lighttpd_adapter_which_runs_the_app() -> None:
    adapter = fronts.adapter_for("cgi")
    assert isinstance(adapter, front_lighttpd.LighttpdCGI) and adapter.name == "lighttpd"
    assert adapter.runs_app and adapter.bind("/tmp/run") == ""


def test_script_and_site_are_what_serve_config_renders(tmp_path: Path) -> None:
    from launcher.deploy import render
    from launcher.deploy.context import build

    opts = resolve("examples.hello:app", cli={"backend": "cgi"})
    script_path = str(tmp_path / "bench_app.cgi")
    script, site, mode = front_lighttpd.render(opts, 41235, script_path)
    (expected_script,) = render(build("cgi-script", opts, {"name": "bench_app"}))
    expected_site = render(build("lighttpd", opts, {"listen": "127.0.0.1:41235", "script": script_path,
                                                    "name": "bench_app"}))
    assert script == expected_script.text and mode == expected_script.mode == 0o755
    assert site == "\n".join(item.text for item in expected_site)
    assert "run_cgi('examples.hello:app'" in script
    assert '$SERVER["socket"] == "127.0.0.1:41235"' in site and script_path in site


def test_top_level_is_private_without_access_log_or_user_change(tmp_path: Path) -> None:
    conf = front_lighttpd.top_level(str(tmp_path), str(tmp_path / "site.conf"), connections=1000)
    lines = [line.strip() for line in conf.splitlines()]
    assert f'server.bind = "{tmp_path}/default.sock"' in lines  # not *:80
    assert f'server.errorlog = "{tmp_path}/error.log"' in lines
    assert 'server.systemd-socket-activation = "enable"' in lines
    assert "server.max-connections = 1064" in lines
    assert f'include "{tmp_path}/site.conf"' in lines
    assert not any(line.startswith(("server.username", "server.groupname", "accesslog")) for line in lines)
    assert "mod_accesslog" not in conf

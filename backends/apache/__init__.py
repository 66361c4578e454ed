"""The launcher's own Apache module (mod_launcher_hygiene.c, loaded by the mod_wsgi backend), and
how it is built.

The module refuses what Apache's core parser takes although the launcher's rules do not (obsolete
line folding, Content-Length with Transfer-Encoding, a malformed chunk-size line); see the C source.
It is compiled with ``apxs`` (apache2-dev, which mod_wsgi itself needs) into a file named after the
source's hash, so a changed source is never served by a stale build:

* ``python -m backends.apache`` (run by .ci/install-native.sh right after mod_wsgi is installed)
  builds it into the virtualenv, ``sys.prefix/lib/wsgi-launcher/``;
* a configuration written for a system Apache (``serve config apache``) loads the stable link
  ``mod_launcher_hygiene.so`` beside it (:func:`stable_link`), which each build moves to itself;
* at serve time :func:`module_path` takes that file, else one in the per-user cache
  (``$XDG_CACHE_HOME`` or ``~/.cache``, ``wsgi-launcher/apache/``), else builds it there once: in a
  private temporary directory beside the target, then renamed into place (atomic: two servers
  starting at once under pytest-xdist each build, and one file wins whole).

As root, Apache loads modules before it switches user: the file only needs to be readable by root.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mod_launcher_hygiene.c")
#: The name Apache knows the module by (``LoadModule NAME PATH``).
MODULE_NAME = "launcher_hygiene_module"
STEM = "mod_launcher_hygiene"
BUILD_TIMEOUT = 120.0


class BuildError(Exception):
    """The module could not be built (one line: why)."""


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    with open(SOURCE, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:16]


def file_name() -> str:
    return f"{STEM}-{source_hash()}.so"


def installed_path() -> str:
    """Where ``python -m backends.apache`` puts the module: inside the virtualenv."""
    return os.path.join(sys.prefix, "lib", "wsgi-launcher", file_name())


def cache_path() -> str:
    """Where serve builds the module when the virtualenv has none: the per-user cache."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "wsgi-launcher", "apache", file_name())


def find_apxs() -> str | None:
    for name in ("apxs", "apxs2"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
        if found:
            return found
    return None


def build(target: str) -> str:
    """Compile the module into ``target`` (atomically); raises :class:`BuildError`."""
    apxs = find_apxs()
    if apxs is None:
        raise BuildError("apxs (apache2-dev) is not installed")
    directory = os.path.dirname(target)
    try:
        os.makedirs(directory, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".build-", dir=directory)
    except OSError as exc:
        raise BuildError(f"cannot create {directory}: {exc.strerror or exc}") from None
    try:
        shutil.copyfile(SOURCE, os.path.join(work, f"{STEM}.c"))
        try:
            done = subprocess.run([apxs, "-c", f"{STEM}.c"], cwd=work, capture_output=True,
                                  timeout=BUILD_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(f"{apxs} -c failed: {exc}") from None
        built = os.path.join(work, ".libs", f"{STEM}.so")
        if done.returncode != 0 or not os.path.exists(built):
            lines = [ln for ln in done.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
            raise BuildError(f"{apxs} -c failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
        os.chmod(built, 0o755)
        os.replace(built, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def module_path() -> str:
    """The built module for this source: the virtualenv's, else the per-user cache's, else built
    into the cache now.  Raises :class:`BuildError` (one line) when there is none and it cannot be
    built."""
    for path in (installed_path(), cache_path()):
        if os.path.isfile(path):
            return path
    return build(cache_path())


def stable_link(path: str) -> str:
    """``mod_launcher_hygiene.so`` beside ``path``, a symbolic link to it (replaced atomically): the
    name a system Apache's configuration (``serve config apache``) loads, so that rebuilding after
    an upgrade (``python -m backends.apache``) moves it to the new build and removing the old one
    cannot leave Apache pointing at a file that is gone."""
    directory = os.path.dirname(path)
    link = os.path.join(directory, f"{STEM}.so")
    temporary = os.path.join(directory, f".{STEM}.so.{os.getpid()}")
    try:
        os.unlink(temporary)
    except FileNotFoundError:
        pass
    os.symlink(os.path.basename(path), temporary)
    os.replace(temporary, link)
    return link


def install() -> str:
    """Build the module into the virtualenv (when not there yet), point the stable link at it and
    remove builds of older sources."""
    target = installed_path()
    if not os.path.isfile(target):
        build(target)
    stable_link(target)
    directory = os.path.dirname(target)
    for name in os.listdir(directory):
        if name.startswith(f"{STEM}-") and name.endswith(".so") and name != file_name():
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
    return target

#!/usr/bin/env bash
# Backends whose Python package is native code, installed only when they can be: a backend that
# cannot be installed is left out with a one-line notice, never a failure.
#   uwsgi:    the pyuwsgi wheel (uWSGI as a Python extension, no compiler); without a wheel for this
#             platform, a source build when a C compiler and the Python headers are there.
#   mod_wsgi: needs apache2-dev (apxs).  --no-binary: a cached wheel may be built for another Python.
#             Then the launcher's own Apache module (backends/apache), built with the same apxs into
#             the virtualenv; without it the backend builds it at first start, or refuses to start.
set -uo pipefail
py="$1"

if "$py" -c 'import pyuwsgi' 2>/dev/null; then :
elif "$py" -m pip install -q --only-binary pyuwsgi 'pyuwsgi>=2.0.28' >/tmp/pyuwsgi-install.log 2>&1; then :
elif command -v cc >/dev/null && "$py" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  "$py" -m pip install -q --no-cache-dir 'pyuwsgi>=2.0.28' >>/tmp/pyuwsgi-install.log 2>&1 \
    || echo "notice: pyuwsgi did not build (see /tmp/pyuwsgi-install.log); the uwsgi backend is left out"
else
  echo "notice: no pyuwsgi wheel for this platform and no compiler/Python headers; the uwsgi backend is left out"
fi

if "$py" -c 'import mod_wsgi' 2>/dev/null; then :
elif [ -x /usr/bin/apxs ]; then
  "$py" -m pip install -q --no-cache-dir --no-binary mod_wsgi 'mod_wsgi>=5.0.0' >/tmp/mod_wsgi-install.log 2>&1 \
    || echo "notice: mod_wsgi did not build (see /tmp/mod_wsgi-install.log); the mod_wsgi backend is left out"
else
  echo "notice: apache2-dev is not installed; the mod_wsgi backend is left out"
fi
if [ -x /usr/bin/apxs ] && "$py" -c 'import mod_wsgi' 2>/dev/null; then
  "$py" -m backends.apache >/tmp/mod_launcher_hygiene-build.log 2>&1 \
    || echo "notice: the launcher's Apache module did not build (see /tmp/mod_launcher_hygiene-build.log); the mod_wsgi backend will try again when it starts"
fi

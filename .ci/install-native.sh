#!/usr/bin/env bash
# Backends whose Python package compiles against system software, installed only when that
# software is there: a backend that cannot be installed is left out with a one-line notice.
#   mod_wsgi: needs apache2-dev (apxs).  --no-binary: a cached wheel may be built for another Python.
set -uo pipefail
py="$1"
if "$py" -c 'import mod_wsgi' 2>/dev/null; then :
elif [ -x /usr/bin/apxs ]; then
  "$py" -m pip install -q --no-cache-dir --no-binary mod_wsgi 'mod_wsgi>=5.0.0' >/tmp/mod_wsgi-install.log 2>&1 \
    || echo "notice: mod_wsgi did not build (see /tmp/mod_wsgi-install.log); the mod_wsgi backend is left out"
else
  echo "notice: apache2-dev is not installed; the mod_wsgi backend is left out"
fi

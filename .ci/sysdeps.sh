#!/usr/bin/env bash
# System packages the project needs, installed through apt-get when run as root and missing.
#   sysdeps.sh venv  - what building the virtualenv needs (python3-venv)
#   sysdeps.sh run   - what `make run` needs (apache2-dev for mod_wsgi): missing ones are a notice
#   sysdeps.sh test  - what the tests need: nginx, apache2, apache2-dev, lighttpd, wrk;
#                      under CI=true a missing one is a failure, never a skip
set -uo pipefail
mode="${1:-test}"

declare -A provides=(
  [nginx]=/usr/sbin/nginx
  [apache2]=/usr/sbin/apache2
  [apache2-dev]=/usr/bin/apxs
  [lighttpd]=/usr/sbin/lighttpd
  [wrk]=/usr/bin/wrk
)
case "$mode" in
  venv) wanted=(python3-venv) ;;
  run)  wanted=(apache2 apache2-dev) ;;
  *)    wanted=(nginx apache2 apache2-dev lighttpd wrk) ;;
esac

have() {
  if [ "$1" = python3-venv ]; then
    [ ! -x /usr/bin/python3 ] || /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null
  else
    [ -e "${provides[$1]}" ]
  fi
}

missing=()
for pkg in "${wanted[@]}"; do have "$pkg" || missing+=("$pkg"); done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || \
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || true
fi

still=()
for pkg in "${missing[@]}"; do have "$pkg" || still+=("$pkg"); done
[ ${#still[@]} -eq 0 ] && exit 0
if [ "$mode" = test ] && [ "${CI:-}" = true ]; then
  echo "error: system packages missing and not installable: ${still[*]} (CI needs them: run as root with apt-get)" >&2
  exit 1
fi
for pkg in "${still[@]}"; do
  echo "notice: system package $pkg is not installed and could not be installed; what needs it is left out"
done
exit 0

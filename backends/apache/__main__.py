"""``python -m backends.apache``: build the launcher's Apache module into the virtualenv (see
backends/apache/__init__.py); exit 1 with one line when it cannot be built."""

from __future__ import annotations

import sys

from backends.apache import BuildError, install


def main() -> int:
    try:
        print(install())
    except BuildError as exc:
        print(f"mod_launcher_hygiene: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

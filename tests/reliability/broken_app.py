"""An app module that fails while it is imported (for the fault tests)."""

raise RuntimeError("reliability-broken-at-import")

"""The error an engine raises when it could not run the experiment (``fedsim run`` exits 1
with its message, never 0 and never with a traceback)."""

from __future__ import annotations


class EngineError(RuntimeError):
    """An engine failed: its message says what failed and where its log is."""

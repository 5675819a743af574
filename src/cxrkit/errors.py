"""One base class for every error cxrkit raises on purpose (no torch, no heavy imports).

A :class:`CxrkitError`'s message is all a user needs: it names the file or option that is
wrong and what to do about it. The CLI prints it as one line and exits 2; anything else that
escapes is a bug and is reported with a pointer to ``--debug`` / ``CXR_DEBUG=1``.

Domain errors also keep the builtin class they always had (``ValueError``, ``RuntimeError``),
so code that caught those still works.
"""

from __future__ import annotations


class CxrkitError(Exception):
    """An expected failure with a message that names the culprit and the fix."""


class UsageError(CxrkitError, ValueError):
    """An option, argument or config value that cannot work; the message says which and why."""

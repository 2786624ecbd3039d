"""The one error type whose message is meant for the user.

Every module of the core raises a subclass of :class:`UserError` when the *input* is wrong (a
file that cannot be read, a parameter out of range, a model that does not fit the data): the UI
shows its message as it is. Anything else that escapes the core is a bug: the UI shows a short
"this is a bug" message and logs the traceback on the server, rather than presenting a numpy
``ValueError`` as if the user's input were at fault.

``UserError`` derives from ``ValueError`` so that callers who caught ``ValueError`` before keep
working.
"""
from __future__ import annotations


class UserError(ValueError):
    """Input that the core cannot use; the message says what was expected and what was got."""


class SpecError(UserError):
    """A method name or parameter that the registry does not accept."""


__all__ = ["SpecError", "UserError"]

"""The one error type for operator mistakes: printed as one clean line, never a traceback."""
from __future__ import annotations

import difflib


class OperatorError(Exception):
    """Something the operator can fix: bad input, a missing file, an unreachable service.

    The message says what is wrong and what to do about it.
    """

    exit_code = 2


def did_you_mean(name: str, known: list[str]) -> str:
    """The end of an "unknown NAME" message: the closest known name, else all of them."""
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known) or 'none'}"

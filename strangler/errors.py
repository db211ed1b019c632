"""The one error type for operator mistakes: printed as one clean line, never a traceback."""


class OperatorError(Exception):
    """Something the operator can fix: bad input, a missing file, an unreachable service.

    The message says what is wrong and what to do about it.
    """

    exit_code = 2

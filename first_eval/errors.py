"""The one exception type the command lines turn into a single clear error line."""


class UserError(ValueError):
    """Bad input from a user: a file, a flag, a spec.

    The CLIs print ``error: <message>`` on stderr and exit with status 2, never a traceback.
    It subclasses :class:`ValueError` so library callers can catch either.
    """

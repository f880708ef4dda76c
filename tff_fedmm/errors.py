"""Errors a user can cause: the CLI prints their message on one line and exits with status 2."""


class UsageError(Exception):
    """A bad flag or argument; the message names the flag and what is allowed."""


class DataError(UsageError):
    """Bad input data; the message names the file (and line where it applies) and what was expected."""

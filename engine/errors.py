"""Errors meant for the user: the CLI prints the message as one sentence and exits non-zero."""


class UserError(Exception):
    """Bad input from the user (a missing source, a wrong flag value, a refused resume)."""

    exit_code = 2

"""The one exception type the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a spec key, a file, a line. The message names where and what."""


class Damaged(UserError):
    """A file whose bytes are not what was written (checksum mismatch, truncated, unreadable): the
    run falls back to an earlier copy or redoes the work; elsewhere it is a UserError like any other."""

"""The error a user can fix: the CLI prints its message and exits non-zero, with no traceback."""


class UserError(Exception):
    """Bad params, missing or malformed data, an unusable checkpoint: say what to do."""

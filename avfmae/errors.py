"""The errors a user can fix: the CLI prints their message and exits non-zero, with no traceback."""


class UserError(Exception):
    """Bad params, missing or malformed data, an unusable checkpoint: say what to do."""


class ConfigError(UserError, ValueError):
    """A params.yaml problem; the message names the dotted key and what is allowed."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or converted as asked; the message names the file."""

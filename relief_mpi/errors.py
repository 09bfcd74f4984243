"""User-facing errors: one clear line, non-zero exit, no traceback."""


class ReliefError(Exception):
    """A problem with the user's input (options, files, fleet) that the user can fix."""

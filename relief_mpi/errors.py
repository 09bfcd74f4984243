"""User-facing errors: one clear line, non-zero exit, no traceback."""


class ReliefError(Exception):
    """A problem with the user's input (options, files, fleet) that the user can fix."""


class WriteFailed(ReliefError):
    """An output file could not be written (read-only folder, disk full): one line and exit 1, as
    for a run's log (stops.EXIT_FAILED), and no partial file left behind."""

    exit_code = 1

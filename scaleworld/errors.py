"""The one error type users see: a one-line message naming the problem and the fix."""


class ScaleworldError(Exception):
    """A user-facing error. The CLI prints ``error: <message>`` and exits with status 2."""


class DamagedRunError(ScaleworldError):
    """A record in a run root is missing or damaged; the message names the file."""

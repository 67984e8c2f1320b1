"""The one error type users see: a one-line message naming the problem and the fix; and the largest
whole number any input may hold."""

MAX_COUNT = 2**53
"""The largest whole number a spec or a command-line option may hold (steps, sizes, seeds): beyond it
a float no longer holds every integer, and no budget or size is that large (a typo, or a value meant
to overflow int64)."""


class ScaleworldError(Exception):
    """A user-facing error. The CLI prints ``error: <message>`` and exits with status 2."""


class DamagedRunError(ScaleworldError):
    """A record in a run root is missing or damaged; the message names the file."""

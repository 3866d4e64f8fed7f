"""The one exception type for problems with the user's input."""

from __future__ import annotations


class InsertError(Exception):
    """A problem with the user's input (file, option, checkpoint): the command line prints the
    message alone, without a traceback. Messages name what is wrong, in which file, and the fix."""

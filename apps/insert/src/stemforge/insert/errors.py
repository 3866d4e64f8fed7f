"""The one exception type for problems with the user's input."""

from __future__ import annotations

from stemforge.pipelines import PipelineError


class InsertError(PipelineError):
    """A problem with the user's input (file, option, checkpoint): the command line prints the
    message alone, without a traceback, as it does for the pipelines' :class:`PipelineError`.
    Messages name what is wrong, in which file, and the fix."""

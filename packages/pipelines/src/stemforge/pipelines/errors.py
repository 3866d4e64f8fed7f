"""The one exception type of the pipelines: a problem with the caller's input or a model folder."""

from __future__ import annotations


class PipelineError(ValueError):
    """A problem with an input (tensor, option, model folder). Messages name what is wrong, where,
    and the fix; an application prints them without a traceback."""

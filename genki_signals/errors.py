"""Exception types shared across the package.

Every error names what is at fault (operator, field, node, file) in its message, so a user can
act on it without reading a traceback.
"""


class GenkiError(Exception):
    """Base class of every error raised deliberately by genki_signals."""


class OperatorError(GenkiError, ValueError):
    """An operator was built with bad parameters or fed input it cannot process."""


class GraphError(GenkiError, ValueError):
    """A SignalGraph is invalid: cycle, missing input, duplicate name, bad operator spec.

    ``problems`` holds each problem with the output name of the operator at fault (None when
    no single operator is: a cycle), so a caller can point at the operator in its own terms.
    """

    def __init__(self, message: str, problems: tuple[tuple[str | None, str], ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class SourceError(GenkiError, RuntimeError):
    """A data source failed or was used wrongly."""


class SystemStoppedError(GenkiError, RuntimeError):
    """A running System stopped because an operator or its source raised."""

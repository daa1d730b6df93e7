"""The one base of every error unirank reports to a user: its message says what was wrong and
what to do. The CLI turns any of them into one line and exit code 1 without importing the
stage that raised it (so `unirank-cli --help` stays fast)."""


class UnirankError(Exception):
    """A known problem with the user's project, data or request (not a bug)."""


class RecommendError(UnirankError, ValueError):
    """The lookup was asked something it cannot answer (unknown canvas, missing context, bad K).
    ``field`` names the input at fault (``canvas``, ``k``, ``country`` or a context column), so
    the HTTP service can answer 404 / 422 naming it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CacheMissingError(RecommendError):
    """No recommendations cache has been published yet."""

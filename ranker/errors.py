"""The one base of every error unirank reports to a user: its message says what was wrong and
what to do. The CLI turns any of them into one line and exit code 1 without importing the
stage that raised it (so `unirank-cli --help` stays fast)."""


class UnirankError(Exception):
    """A known problem with the user's project, data or request (not a bug)."""

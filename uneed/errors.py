"""The one base class of errors a user can fix (bad file, bad flag, missing run directory).

The CLI and the HTTP server turn a `PresalesError` into a clear message, never a traceback.
"""


class PresalesError(Exception):
    """An error caused by input the user controls; its message says what and where."""


class ModelLoadError(PresalesError):
    """A model or run directory that is missing, incomplete, corrupt or unreadable."""

"""User-facing errors.

Anything raised as a `SyncloraError` carries a sentence meant for the person who gave the input; the CLI prints it
on one line (exit code 2) and the app shows it as `gr.Error`. Everything else is a bug and keeps its traceback.
"""


class SyncloraError(Exception):
    """An error whose message is written for the user."""


class InputError(SyncloraError):
    """The user's input (file, frame index, image, option) cannot be used."""


class ModelUnavailableError(SyncloraError):
    """A backend or model cannot run here (no GPU, weights missing or corrupt)."""


class OutOfMemoryError(SyncloraError):
    """The accelerator ran out of memory; the message says what to try."""

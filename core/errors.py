"""Errors whose messages are written for the user: what is wrong, where, and what to do.

The GUI shows these through one funnel (app/errors.py); the CLI prints ``error: <message>`` and
exits 2. ``Cancelled`` is not an error to show: it means the user asked to stop.
"""

from __future__ import annotations


class QuantpressError(Exception):
    """Base class of every error meant for the user."""


class Cancelled(QuantpressError):
    """The job was cancelled on request. Nothing it was writing is left behind."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class InvalidModel(QuantpressError):
    """The model source is missing, malformed or of a kind we refuse (e.g. pickle checkpoints)."""


class UnsupportedArchitecture(QuantpressError):
    """The architecture cannot be converted (yet); the message lists what is supported."""


class InvalidInput(QuantpressError):
    """A file or argument other than the model is invalid (calibration text, imatrix, options)."""


class NotEnoughDiskSpace(QuantpressError):
    """The output would not fit on the target filesystem."""


class ModelLoadError(QuantpressError):
    """The runtime (llama.cpp, torch) could not load a model."""


class NetworkUnavailable(QuantpressError):
    """The Hugging Face Hub (or another host) cannot be reached and nothing local can stand in."""


class GatedRepo(QuantpressError):
    """A gated or private Hub repo refused us: the user must accept its terms on the Hub and log in
    with an access token. ``repo_id`` lets the GUI ask for a token and retry."""

    def __init__(self, message: str, repo_id: str = "") -> None:
        super().__init__(message)
        self.repo_id = repo_id

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # pickles across app/isolated.py's pipe
        return (type(self), (str(self), self.repo_id))

"""User-facing errors.

Every problem a user can fix (a bad file, a wrong channel count, an unknown label) is raised as a
:class:`MedXAIError` subclass whose message names the problem and the fix. The CLI prints such errors as one
line and exits non-zero without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MedXAIError(Exception):
    """Base class of every error whose message is meant for the user."""


class InputError(MedXAIError):
    """An input file or array is missing, unreadable or inconsistent (geometry, channels, NaN voxels)."""


class ModelError(MedXAIError):
    """A model cannot be found, loaded or used with the given input."""


class TargetError(MedXAIError):
    """The requested explanation target does not exist or is empty."""


class MethodError(MedXAIError):
    """An explanation method cannot run on this model, target or layer."""


class CancelledError(MedXAIError):
    """A job was cancelled by the user; partial outputs have been removed."""

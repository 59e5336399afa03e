"""Errors a training run raises before it writes anything: bad data, options or model.

All carry ErrorCode.VALIDATION_ERROR (422), like the dataset builder's option errors: the
request was understood but its inputs cannot be trained on. The CLI turns them into a
message and a non-zero exit.
"""

from __future__ import annotations

from domain.model.errors import DomainError, ErrorCode


class TrainingError(DomainError):
    error_code = ErrorCode.VALIDATION_ERROR
    http_status = 422


class TrainingDataError(TrainingError):
    """The dataset folder, kind or split is missing, empty or has the wrong columns."""


class TrainingOptionsError(TrainingError):
    """An option is unknown to the trainer's config, or the trainer rejected its value."""


class TrainingModelError(TrainingError):
    """A model, reward model or reference model cannot be loaded."""

"""Typed domain errors with stable error codes.

Codes follow Open-Assistant's ``OasstErrorCode`` where OA has one, so OA clients that
branch on ``error_code`` keep working. OA aliases two pairs of codes (2053 for both
self-labelling and duplicate labels, 2106 for both "not collective" and "not assigned");
we give every error its own number (2054, 2108) so a client can tell them apart.
Codes we added for rules OA does not enforce live in gaps of OA's ranges and are listed
in the README.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    GENERIC_ERROR = 0
    CONFIG_INVALID = 5
    API_CLIENT_NOT_AUTHORIZED = 2
    ROOT_TOKEN_NOT_AUTHORIZED = 3
    DATABASE_MAX_RETRIES_EXHAUSTED = 4
    SORT_KEY_UNSUPPORTED = 100
    INVALID_CURSOR_VALUE = 101
    VALIDATION_ERROR = 422
    TOO_MANY_REQUESTS = 429

    TASK_INVALID_REQUEST_TYPE = 1000
    TASK_ACK_FAILED = 1001
    TASK_NACK_FAILED = 1002
    TASK_INVALID_RESPONSE_TYPE = 1003
    TASK_REQUESTED_TYPE_NOT_AVAILABLE = 1006
    TASK_MESSAGE_TOO_LONG = 1008
    TASK_MESSAGE_DUPLICATED = 1009
    TASK_MESSAGE_TEXT_EMPTY = 1010
    TASK_MESSAGE_DUPLICATE_REPLY = 1011
    TASK_TOO_MANY_PENDING = 1012

    INVALID_FRONTEND_MESSAGE_ID = 2000
    MESSAGE_NOT_FOUND = 2001
    INVALID_RANKING_VALUE = 2003
    NO_MESSAGE_TREE_FOUND = 2006
    NO_REPLIES_FOUND = 2007
    INVALID_MESSAGE = 2008
    TREE_IN_ABORTED_STATE = 2010
    CORRUPT_RANKING_RESULT = 2011
    AUTH_AND_USERNAME_REQUIRED = 2012
    # ours (OA has no such guard)
    MAX_DEPTH_EXCEEDED = 2020
    MAX_CHILDREN_EXCEEDED = 2021
    PARENT_NOT_ACCEPTED = 2022
    MESSAGE_DELETED = 2023
    INVALID_ROLE = 2024
    TREE_NOT_IN_RANKING_STATE = 2030
    SELF_RANKING = 2031
    DUPLICATE_RANKING = 2032
    RANKING_COMPLETE = 2033
    INVALID_STATE_TRANSITION = 2040
    MESSAGE_ALREADY_EXISTS = 2041

    TEXT_LABELS_WRONG_MESSAGE_ID = 2050
    TEXT_LABELS_INVALID_LABEL = 2051
    TEXT_LABELS_MANDATORY_LABEL_MISSING = 2052
    TEXT_LABELS_NO_SELF_LABELING = 2053
    TEXT_LABELS_DUPLICATE_TASK_REPLY = 2054  # OA: 2053 (aliased)
    TEXT_LABELS_VALUE_OUT_OF_RANGE = 2055
    TEXT_LABELS_NOT_UNDER_REVIEW = 2056

    TASK_NOT_FOUND = 2100
    TASK_EXPIRED = 2101
    TASK_PAYLOAD_TYPE_MISMATCH = 2102
    TASK_ALREADY_UPDATED = 2103
    TASK_NOT_ACK = 2104
    TASK_ALREADY_DONE = 2105
    TASK_NOT_COLLECTIVE = 2106
    TASK_NOT_ASSIGNED_TO_USER = 2108  # OA: 2106 (aliased)

    USER_NOT_SPECIFIED = 4000
    USER_DISABLED = 4001
    USER_NOT_FOUND = 4002
    USER_HAS_NOT_ACCEPTED_TOS = 4003
    API_CLIENT_NOT_FOUND = 4010

    HUGGINGFACE_API_ERROR = 3001  # OA: an external classifier failed (or none is set)
    EMOJI_OP_UNSUPPORTED = 5000

    # ours: the models registry (a range OA does not use)
    MODEL_NOT_FOUND = 7000
    MODEL_ALREADY_REGISTERED = 7001
    INVALID_MODEL = 7002

    # ours: images on messages (a range OA does not use)
    IMAGE_INVALID = 7100
    IMAGE_TOO_LARGE = 7101
    IMAGE_NOT_FOUND = 7102
    IMAGE_UNSUPPORTED_TYPE = 7103


class DomainError(Exception):
    """A rule was violated; nothing was recorded."""

    error_code: ErrorCode = ErrorCode.GENERIC_ERROR
    http_status: int = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, error_code={int(self.error_code)})"


def _error(name: str, code: ErrorCode, status: int = 400) -> type[DomainError]:
    return type(name, (DomainError,), {"error_code": code, "http_status": status})


ConfigError = _error("ConfigError", ErrorCode.CONFIG_INVALID, 500)
TextTooLongError = _error("TextTooLongError", ErrorCode.TASK_MESSAGE_TOO_LONG)
TextEmptyError = _error("TextEmptyError", ErrorCode.TASK_MESSAGE_TEXT_EMPTY)
DuplicateTextError = _error("DuplicateTextError", ErrorCode.TASK_MESSAGE_DUPLICATED)
DuplicateReplyError = _error("DuplicateReplyError", ErrorCode.TASK_MESSAGE_DUPLICATE_REPLY)
TooManyPendingTasksError = _error("TooManyPendingTasksError", ErrorCode.TASK_TOO_MANY_PENDING)
TaskNotAvailableError = _error(
    "TaskNotAvailableError", ErrorCode.TASK_REQUESTED_TYPE_NOT_AVAILABLE, 503
)
MessageNotFoundError = _error("MessageNotFoundError", ErrorCode.MESSAGE_NOT_FOUND, 404)
TreeNotFoundError = _error("TreeNotFoundError", ErrorCode.NO_MESSAGE_TREE_FOUND, 404)
InvalidRankingError = _error("InvalidRankingError", ErrorCode.INVALID_RANKING_VALUE)
NoRepliesFoundError = _error("NoRepliesFoundError", ErrorCode.NO_REPLIES_FOUND)
InvalidMessageError = _error("InvalidMessageError", ErrorCode.INVALID_MESSAGE)
TreeInAbortedStateError = _error("TreeInAbortedStateError", ErrorCode.TREE_IN_ABORTED_STATE)
MaxDepthExceededError = _error("MaxDepthExceededError", ErrorCode.MAX_DEPTH_EXCEEDED)
MaxChildrenExceededError = _error("MaxChildrenExceededError", ErrorCode.MAX_CHILDREN_EXCEEDED)
ParentNotAcceptedError = _error("ParentNotAcceptedError", ErrorCode.PARENT_NOT_ACCEPTED)
MessageDeletedError = _error("MessageDeletedError", ErrorCode.MESSAGE_DELETED)
InvalidRoleError = _error("InvalidRoleError", ErrorCode.INVALID_ROLE)
TreeNotInRankingStateError = _error(
    "TreeNotInRankingStateError", ErrorCode.TREE_NOT_IN_RANKING_STATE
)
SelfRankingError = _error("SelfRankingError", ErrorCode.SELF_RANKING)
DuplicateRankingError = _error("DuplicateRankingError", ErrorCode.DUPLICATE_RANKING)
RankingCompleteError = _error("RankingCompleteError", ErrorCode.RANKING_COMPLETE)
InvalidStateTransitionError = _error(
    "InvalidStateTransitionError", ErrorCode.INVALID_STATE_TRANSITION, 409
)
MessageAlreadyExistsError = _error(
    "MessageAlreadyExistsError", ErrorCode.MESSAGE_ALREADY_EXISTS, 409
)
WrongMessageIdError = _error("WrongMessageIdError", ErrorCode.TEXT_LABELS_WRONG_MESSAGE_ID)
InvalidLabelError = _error("InvalidLabelError", ErrorCode.TEXT_LABELS_INVALID_LABEL)
MandatoryLabelMissingError = _error(
    "MandatoryLabelMissingError", ErrorCode.TEXT_LABELS_MANDATORY_LABEL_MISSING
)
SelfLabelingError = _error("SelfLabelingError", ErrorCode.TEXT_LABELS_NO_SELF_LABELING)
DuplicateLabelError = _error("DuplicateLabelError", ErrorCode.TEXT_LABELS_DUPLICATE_TASK_REPLY)
LabelValueOutOfRangeError = _error(
    "LabelValueOutOfRangeError", ErrorCode.TEXT_LABELS_VALUE_OUT_OF_RANGE
)
NotUnderReviewError = _error("NotUnderReviewError", ErrorCode.TEXT_LABELS_NOT_UNDER_REVIEW)
TaskNotFoundError = _error("TaskNotFoundError", ErrorCode.TASK_NOT_FOUND, 404)
TaskExpiredError = _error("TaskExpiredError", ErrorCode.TASK_EXPIRED)
TaskTypeMismatchError = _error("TaskTypeMismatchError", ErrorCode.TASK_PAYLOAD_TYPE_MISMATCH)
TaskAlreadyUpdatedError = _error("TaskAlreadyUpdatedError", ErrorCode.TASK_ALREADY_UPDATED)
TaskNotAckedError = _error("TaskNotAckedError", ErrorCode.TASK_NOT_ACK)
TaskAlreadyDoneError = _error("TaskAlreadyDoneError", ErrorCode.TASK_ALREADY_DONE)
TaskNotAssignedError = _error("TaskNotAssignedError", ErrorCode.TASK_NOT_ASSIGNED_TO_USER, 403)
UserDisabledError = _error("UserDisabledError", ErrorCode.USER_DISABLED, 503)
UserNotFoundError = _error("UserNotFoundError", ErrorCode.USER_NOT_FOUND, 404)
# a user id, username or display name (or a NUL in any text) the input rules refuse
InvalidInputError = _error("InvalidInputError", ErrorCode.VALIDATION_ERROR, 422)
ApiClientNotFoundError = _error("ApiClientNotFoundError", ErrorCode.API_CLIENT_NOT_FOUND, 404)
EmojiOpUnsupportedError = _error("EmojiOpUnsupportedError", ErrorCode.EMOJI_OP_UNSUPPORTED)
ModelNotFoundError = _error("ModelNotFoundError", ErrorCode.MODEL_NOT_FOUND, 404)
ModelAlreadyRegisteredError = _error(
    "ModelAlreadyRegisteredError", ErrorCode.MODEL_ALREADY_REGISTERED, 409
)
InvalidModelError = _error("InvalidModelError", ErrorCode.INVALID_MODEL)
ImageNotFoundError = _error("ImageNotFoundError", ErrorCode.IMAGE_NOT_FOUND, 404)
InvalidImageError = _error("InvalidImageError", ErrorCode.IMAGE_INVALID)
ConcurrencyError = _error("ConcurrencyError", ErrorCode.DATABASE_MAX_RETRIES_EXHAUSTED, 503)

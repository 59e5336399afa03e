"""The label catalogue and the rules that read label values.

Mirrors Open-Assistant's ``TextLabel`` catalogue (reference §4.1) and its acceptance score
(reference §4.2). Which labels a review task offers depends on the kind of message under
review and on the labelling mode (simple or full); the lists themselves live in
:class:`domain.model.config.TreeConfig` so that operators can change them, and the functions here
only read them.

Pure module: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from enum import StrEnum
from numbers import Real
from typing import TYPE_CHECKING

import msgspec

from domain.model.errors import InvalidLabelError, LabelValueOutOfRangeError

if TYPE_CHECKING:  # pragma: no cover - import only for type checkers (avoids a cycle)
    from domain.model.config import TreeConfig

__all__ = [
    "TextLabel",
    "Widget",
    "LabelInfo",
    "LABELS",
    "LABEL_NAMES",
    "REPORT_LABELS",
    "MessageKind",
    "LabelKind",
    "LabelMode",
    "Disposition",
    "full_labels",
    "mandatory_labels",
    "simple_labels",
    "valid_labels",
    "disposition",
    "all_labels_without_message",
    "acceptance_score",
    "is_accepted",
    "validate_label_values",
]


class TextLabel(StrEnum):
    SPAM = "spam"
    FAILS_TASK = "fails_task"
    LANG_MISMATCH = "lang_mismatch"
    PII = "pii"
    NOT_APPROPRIATE = "not_appropriate"
    HATE_SPEECH = "hate_speech"
    SEXUAL_CONTENT = "sexual_content"
    MORAL_JUDGEMENT = "moral_judgement"
    POLITICAL_CONTENT = "political_content"
    QUALITY = "quality"
    TOXICITY = "toxicity"
    HUMOR = "humor"
    HELPFULNESS = "helpfulness"
    CREATIVITY = "creativity"
    VIOLENCE = "violence"


class Widget(StrEnum):
    """How a front end asks for the value: yes_no and flag are 0/1, likert is a 5-point scale
    mapped to 0, 0.25, 0.5, 0.75, 1 (the backend does not enforce the discretisation)."""

    YES_NO = "yes_no"
    FLAG = "flag"
    LIKERT = "likert"


class LabelInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: TextLabel
    widget: Widget
    display_text: str
    help_text: str = ""


def _info(name: TextLabel, widget: Widget, display_text: str, help_text: str = "") -> LabelInfo:
    return LabelInfo(name=name, widget=widget, display_text=display_text, help_text=help_text)


_L, _W = TextLabel, Widget

# Order follows the enum (and OA's protocol.py).
LABELS: Mapping[TextLabel, LabelInfo] = {
    info.name: info
    for info in (
        _info(
            _L.SPAM,
            _W.YES_NO,
            "Seems to be intentionally low-quality or irrelevant",
            "The message is spam, a test, or otherwise not a genuine attempt at the task.",
        ),
        _info(
            _L.FAILS_TASK,
            _W.YES_NO,
            "Fails to follow the correct instruction / task",
            "The reply does not do what the prompt asked for.",
        ),
        _info(
            _L.LANG_MISMATCH,
            _W.FLAG,
            "Wrong Language",
            "The message is not written in the language of the conversation.",
        ),
        _info(
            _L.PII,
            _W.FLAG,
            "Contains personal identifiable information (PII)",
            "Names, addresses, phone numbers or other data that identify a real person.",
        ),
        _info(
            _L.NOT_APPROPRIATE,
            _W.FLAG,
            "Inappropriate",
            "Not suitable for a customer-facing assistant.",
        ),
        _info(
            _L.HATE_SPEECH,
            _W.FLAG,
            "Content is abusive or threatening and expresses prejudice against a protected "
            "characteristic",
            "Prejudice means preconceived views not based on reason; protected characteristics "
            "include gender, ethnicity, religion, sexual orientation and similar.",
        ),
        _info(_L.SEXUAL_CONTENT, _W.FLAG, "Contains sexual content"),
        _info(_L.MORAL_JUDGEMENT, _W.FLAG, "Expresses moral judgement"),
        _info(_L.POLITICAL_CONTENT, _W.FLAG, "Expresses political views"),
        _info(_L.QUALITY, _W.LIKERT, "Overall subjective quality rating"),
        _info(_L.TOXICITY, _W.LIKERT, "Rude, abusive, profane or insulting content"),
        _info(_L.HUMOR, _W.LIKERT, "Humorous content including sarcasm"),
        _info(_L.HELPFULNESS, _W.LIKERT, "Helpfulness of the message"),
        _info(_L.CREATIVITY, _W.LIKERT, "Creativity"),
        _info(_L.VIOLENCE, _W.LIKERT, "Violence/abuse/terrorism/self-harm"),
    )
}

LABEL_NAMES: frozenset[str] = frozenset(label.value for label in TextLabel)

# What a free-standing report (`GET /text_labels/report_labels`) offers.
REPORT_LABELS: tuple[TextLabel, ...] = (
    _L.SPAM,
    _L.NOT_APPROPRIATE,
    _L.PII,
    _L.HATE_SPEECH,
    _L.SEXUAL_CONTENT,
    _L.MORAL_JUDGEMENT,
    _L.POLITICAL_CONTENT,
    _L.TOXICITY,
    _L.VIOLENCE,
    _L.QUALITY,
)


class MessageKind(StrEnum):
    INITIAL_PROMPT = "initial_prompt"
    PROMPTER_REPLY = "prompter_reply"
    ASSISTANT_REPLY = "assistant_reply"


class LabelKind(StrEnum):
    """How a label submission counts: the ``kind`` field of ``LabelsSubmitted``.

    The values are stored in the log and must never change.
    """

    TASK = "task"  # a review task's labels: they decide the message's acceptance
    FREE = "free"  # labels given outside a task: recorded, they decide nothing
    REPORT = "report"  # a report: also raises a red flag on the message (auto-moderation)


class LabelMode(StrEnum):
    SIMPLE = "simple"
    FULL = "full"


class Disposition(StrEnum):
    """What a label task is for: a quick spam check (simple) or a quality rating (full)."""

    QUALITY = "quality"
    SPAM = "spam"


def full_labels(config: TreeConfig, message_kind: MessageKind | str) -> tuple[str, ...]:
    """The full-mode label list the configuration gives for this kind of message."""
    message_kind = MessageKind(message_kind)
    if message_kind is MessageKind.INITIAL_PROMPT:
        return tuple(config.labels_initial_prompt)
    if message_kind is MessageKind.ASSISTANT_REPLY:
        return tuple(config.labels_assistant_reply)
    return tuple(config.labels_prompter_reply)


def mandatory_labels(config: TreeConfig, message_kind: MessageKind | str) -> tuple[str, ...]:
    """Labels every task-based submission for this kind of message must contain."""
    message_kind = MessageKind(message_kind)
    if message_kind is MessageKind.INITIAL_PROMPT:
        return tuple(config.mandatory_labels_initial_prompt)
    if message_kind is MessageKind.ASSISTANT_REPLY:
        return tuple(config.mandatory_labels_assistant_reply)
    return tuple(config.mandatory_labels_prompter_reply)


def _dedup(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(item) for item in items))


def simple_labels(config: TreeConfig, message_kind: MessageKind | str) -> tuple[str, ...]:
    """Simple mode: the mandatory labels plus lang_mismatch, plus quality for replies."""
    message_kind = MessageKind(message_kind)
    extra: tuple[str, ...] = (TextLabel.LANG_MISMATCH.value,)
    if message_kind is not MessageKind.INITIAL_PROMPT:
        extra += (TextLabel.QUALITY.value,)
    return _dedup((*mandatory_labels(config, message_kind), *extra))


def valid_labels(
    config: TreeConfig, message_kind: MessageKind | str, mode: LabelMode | str
) -> tuple[str, ...]:
    """Labels a review task of this kind and mode accepts."""
    if LabelMode(mode) is LabelMode.FULL:
        return _dedup(full_labels(config, message_kind))
    return simple_labels(config, message_kind)


def disposition(mode: LabelMode | str) -> Disposition:
    return Disposition.QUALITY if LabelMode(mode) is LabelMode.FULL else Disposition.SPAM


def all_labels_without_message() -> tuple[str, ...]:
    """What valid_labels offers when no message is named: every label except fails_task."""
    return tuple(label.value for label in TextLabel if label is not TextLabel.FAILS_TASK)


def acceptance_score(reviews: Iterable[Mapping[str, float]]) -> float:
    """``1 - mean(spam) - mean(lang_mismatch)`` over the task-based reviews of one message.

    A review without ``lang_mismatch`` counts as 0 for it, as in OA. A review without ``spam``
    also counts as 0 (OA makes spam mandatory, so it never meets one). Other labels never
    affect acceptance. The score can be negative (every review says spam and mismatch: -1).
    Raises ValueError when there are no reviews.
    """
    n = 0
    spam = 0.0
    mismatch = 0.0
    for review in reviews:
        n += 1
        spam += float(review.get(TextLabel.SPAM.value, 0.0))
        mismatch += float(review.get(TextLabel.LANG_MISMATCH.value, 0.0))
    if n == 0:
        raise ValueError("acceptance score needs at least one review")
    return 1.0 - spam / n - mismatch / n


def is_accepted(score: float, threshold: float) -> bool:
    """OA's threshold is strict: a score equal to the threshold is rejected."""
    return score > threshold


def validate_label_values(labels: Mapping[str, float]) -> None:
    """Every name must be in the catalogue and every value a finite number in [0, 1].

    Raises InvalidLabelError (2051) or LabelValueOutOfRangeError, naming the label.
    """
    for name, value in labels.items():
        if name not in LABEL_NAMES:
            raise InvalidLabelError(f"invalid label: {name!r} is not a known label")
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not math.isfinite(float(value))
            or not 0.0 <= float(value) <= 1.0
        ):
            raise LabelValueOutOfRangeError(
                f"label {name!r} has value {value!r}; it must be a number within [0, 1]"
            )

"""Label catalogue, label lists per kind/mode, acceptance score, value validation."""

from __future__ import annotations

import math

import pytest

from domain.model.config import TreeConfig
from domain.model.errors import ErrorCode, InvalidLabelError, LabelValueOutOfRangeError
from domain.model.labels import (
    LABELS,
    REPORT_LABELS,
    Disposition,
    LabelInfo,
    LabelMode,
    MessageKind,
    TextLabel,
    Widget,
    acceptance_score,
    all_labels_without_message,
    disposition,
    full_labels,
    is_accepted,
    mandatory_labels,
    simple_labels,
    valid_labels,
    validate_label_values,
)

# Reference §4.1
EXPECTED_WIDGETS = {
    "spam": "yes_no",
    "fails_task": "yes_no",
    "lang_mismatch": "flag",
    "pii": "flag",
    "not_appropriate": "flag",
    "hate_speech": "flag",
    "sexual_content": "flag",
    "moral_judgement": "flag",
    "political_content": "flag",
    "quality": "likert",
    "toxicity": "likert",
    "humor": "likert",
    "helpfulness": "likert",
    "creativity": "likert",
    "violence": "likert",
}

PROMPT_LABELS = (
    "spam",
    "lang_mismatch",
    "quality",
    "creativity",
    "humor",
    "toxicity",
    "violence",
    "not_appropriate",
    "pii",
    "hate_speech",
    "sexual_content",
)
ASSISTANT_LABELS = (
    "spam",
    "lang_mismatch",
    "fails_task",
    "quality",
    "helpfulness",
    "creativity",
    "humor",
    "toxicity",
    "violence",
    "not_appropriate",
    "pii",
    "hate_speech",
    "sexual_content",
)

CFG = TreeConfig()


# --- catalogue --------------------------------------------------------------------------------


def test_catalogue_has_exactly_fifteen_labels():
    assert len(TextLabel) == 15
    assert len(LABELS) == 15
    assert set(LABELS) == set(TextLabel)
    assert {label.value for label in TextLabel} == set(EXPECTED_WIDGETS)


@pytest.mark.parametrize("name,widget", sorted(EXPECTED_WIDGETS.items()))
def test_widgets_match_reference(name, widget):
    info = LABELS[TextLabel(name)]
    assert isinstance(info, LabelInfo)
    assert info.name == name
    assert info.widget == Widget(widget)
    assert info.display_text
    assert isinstance(info.help_text, str)


def test_some_display_texts():
    assert LABELS[TextLabel.LANG_MISMATCH].display_text == "Wrong Language"
    assert LABELS[TextLabel.SEXUAL_CONTENT].display_text == "Contains sexual content"
    assert (
        LABELS[TextLabel.SPAM].display_text == "Seems to be intentionally low-quality or irrelevant"
    )


def test_label_info_is_frozen():
    with pytest.raises(AttributeError):
        LABELS[TextLabel.SPAM].display_text = "x"  # type: ignore[misc]


def test_enums_are_strings():
    assert TextLabel.SPAM == "spam"
    assert MessageKind("assistant_reply") is MessageKind.ASSISTANT_REPLY
    assert {m.value for m in LabelMode} == {"simple", "full"}
    assert {d.value for d in Disposition} == {"quality", "spam"}
    assert {w.value for w in Widget} == {"yes_no", "flag", "likert"}


def test_report_labels():
    assert [label.value for label in REPORT_LABELS] == [
        "spam",
        "not_appropriate",
        "pii",
        "hate_speech",
        "sexual_content",
        "moral_judgement",
        "political_content",
        "toxicity",
        "violence",
        "quality",
    ]


def test_all_labels_without_message():
    labels = all_labels_without_message()
    assert len(labels) == 14
    assert "fails_task" not in labels
    assert set(labels) == set(EXPECTED_WIDGETS) - {"fails_task"}


# --- label lists per kind and mode ------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,expected",
    [
        (MessageKind.INITIAL_PROMPT, PROMPT_LABELS),
        (MessageKind.PROMPTER_REPLY, PROMPT_LABELS),
        (MessageKind.ASSISTANT_REPLY, ASSISTANT_LABELS),
    ],
)
def test_full_labels(kind, expected):
    assert full_labels(CFG, kind) == expected
    assert full_labels(CFG, kind.value) == expected
    assert valid_labels(CFG, kind, LabelMode.FULL) == expected


@pytest.mark.parametrize("kind", list(MessageKind))
def test_mandatory_labels_default_spam(kind):
    assert mandatory_labels(CFG, kind) == ("spam",)


@pytest.mark.parametrize(
    "kind,expected",
    [
        (MessageKind.INITIAL_PROMPT, ("spam", "lang_mismatch")),
        (MessageKind.PROMPTER_REPLY, ("spam", "lang_mismatch", "quality")),
        (MessageKind.ASSISTANT_REPLY, ("spam", "lang_mismatch", "quality")),
    ],
)
def test_simple_labels(kind, expected):
    assert simple_labels(CFG, kind) == expected
    assert valid_labels(CFG, kind, "simple") == expected


def test_simple_labels_deduplicate_preserving_order():
    cfg = TreeConfig.from_mapping(
        {
            "mandatory_labels_assistant_reply": "quality,spam,lang_mismatch",
            "mandatory_labels_initial_prompt": "lang_mismatch,spam",
        }
    )
    assert simple_labels(cfg, MessageKind.ASSISTANT_REPLY) == ("quality", "spam", "lang_mismatch")
    assert simple_labels(cfg, MessageKind.INITIAL_PROMPT) == ("lang_mismatch", "spam")


def test_lists_follow_config():
    cfg = TreeConfig.from_mapping(
        {"labels_prompter_reply": "spam,humor", "mandatory_labels_prompter_reply": "spam,humor"}
    )
    assert full_labels(cfg, MessageKind.PROMPTER_REPLY) == ("spam", "humor")
    assert mandatory_labels(cfg, MessageKind.PROMPTER_REPLY) == ("spam", "humor")
    assert simple_labels(cfg, MessageKind.PROMPTER_REPLY) == (
        "spam",
        "humor",
        "lang_mismatch",
        "quality",
    )
    # other kinds untouched
    assert full_labels(cfg, MessageKind.INITIAL_PROMPT) == PROMPT_LABELS


def test_unknown_kind_or_mode_rejected():
    with pytest.raises(ValueError):
        full_labels(CFG, "system_reply")
    with pytest.raises(ValueError):
        valid_labels(CFG, MessageKind.INITIAL_PROMPT, "partial")


def test_disposition():
    assert disposition(LabelMode.SIMPLE) is Disposition.SPAM
    assert disposition(LabelMode.FULL) is Disposition.QUALITY
    assert disposition("full") is Disposition.QUALITY


# --- acceptance score (reference §4.2 worked examples) ---------------------------------------

CLEAN = {"spam": 0.0, "lang_mismatch": 0.0}
SPAM = {"spam": 1.0, "lang_mismatch": 0.0}
MISMATCH = {"spam": 0.0, "lang_mismatch": 1.0}
THRESHOLD = CFG.acceptance_threshold_reply


def test_no_flags_accepts():
    score = acceptance_score([CLEAN, CLEAN, CLEAN])
    assert score == 1.0
    assert is_accepted(score, THRESHOLD)


def test_one_spam_of_three_accepts():
    score = acceptance_score([SPAM, CLEAN, CLEAN])
    assert score == pytest.approx(2 / 3)
    assert round(score, 3) == 0.667
    assert is_accepted(score, THRESHOLD)


def test_two_spam_of_three_rejects():
    score = acceptance_score([SPAM, SPAM, CLEAN])
    assert score == pytest.approx(1 / 3)
    assert not is_accepted(score, THRESHOLD)


def test_spam_plus_lang_mismatch_rejects():
    # different reviewers
    score = acceptance_score([SPAM, MISMATCH, CLEAN])
    assert score == pytest.approx(1 / 3)
    assert not is_accepted(score, THRESHOLD)
    # same reviewer
    score = acceptance_score([{"spam": 1.0, "lang_mismatch": 1.0}, CLEAN, CLEAN])
    assert score == pytest.approx(1 / 3)
    assert not is_accepted(score, THRESHOLD)


def test_one_lang_mismatch_only_accepts():
    score = acceptance_score([MISMATCH, CLEAN, CLEAN])
    assert score == pytest.approx(2 / 3)
    assert is_accepted(score, THRESHOLD)


def test_exactly_threshold_is_rejected():
    assert not is_accepted(0.6, 0.6)
    # 2 of 5 reviews say spam: 1 - 0.4 == 0.6
    score = acceptance_score([SPAM, SPAM, CLEAN, CLEAN, CLEAN])
    assert score == 0.6
    assert not is_accepted(score, 0.6)
    assert is_accepted(0.6000001, 0.6)


def test_all_spam_and_all_mismatch_is_minus_one():
    both = {"spam": 1.0, "lang_mismatch": 1.0}
    assert acceptance_score([both, both, both]) == -1.0


def test_missing_labels_count_as_zero():
    assert acceptance_score([{"spam": 1.0}, {"spam": 0.0}]) == 0.5
    assert acceptance_score([{"lang_mismatch": 1.0}, {}]) == 0.5
    assert acceptance_score([{}]) == 1.0


def test_other_labels_do_not_matter():
    bad = {"spam": 0.0, "quality": 0.0, "toxicity": 1.0, "violence": 1.0, "pii": 1.0}
    assert acceptance_score([bad, bad, bad]) == 1.0


def test_acceptance_accepts_generators():
    assert acceptance_score(r for r in [SPAM, CLEAN]) == 0.5


def test_empty_reviews_raise():
    with pytest.raises(ValueError):
        acceptance_score([])


# --- validate_label_values --------------------------------------------------------------------


def test_valid_values_pass():
    validate_label_values({})
    validate_label_values({"spam": 0, "lang_mismatch": 1, "quality": 0.75, "humor": 0.25})
    validate_label_values({TextLabel.VIOLENCE: 0.5})


def test_unknown_label():
    with pytest.raises(InvalidLabelError, match="excessive_harm") as info:
        validate_label_values({"spam": 0.0, "excessive_harm": 1.0})
    assert info.value.error_code == ErrorCode.TEXT_LABELS_INVALID_LABEL == 2051


@pytest.mark.parametrize(
    "value", [1.5, -0.1, -1, 2, math.nan, math.inf, -math.inf, True, False, "0.5", None]
)
def test_value_out_of_range(value):
    with pytest.raises(LabelValueOutOfRangeError, match="quality"):
        validate_label_values({"spam": 0.0, "quality": value})


def test_out_of_range_error_code():
    with pytest.raises(LabelValueOutOfRangeError) as info:
        validate_label_values({"spam": 1.01})
    assert info.value.error_code == ErrorCode.TEXT_LABELS_VALUE_OUT_OF_RANGE

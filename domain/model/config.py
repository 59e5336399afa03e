"""The rules of the data-collection process, as one immutable value.

:class:`TreeConfig` carries every field of Open-Assistant's ``TreeManagerConfiguration``
(reference §3) with OA's defaults, plus the three ``Settings`` values that are rules of the
domain rather than of the deployment (message size limit, task validity, duplicate window).

The constructors take data, never paths or ``os.environ``: the edge reads files and the
environment and hands their contents in. Every constructor validates, so an invalid
configuration never exists; the struct is frozen, so nothing changes it at run time.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from numbers import Real
from typing import Any, ClassVar, NoReturn

import msgspec

from domain.model.errors import ConfigError
from domain.model.labels import LABEL_NAMES

__all__ = ["TreeConfig", "ENV_PREFIX"]

ENV_PREFIX = "DATAENGINE_TREE__"

_PROMPT_LABELS: tuple[str, ...] = (
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
_ASSISTANT_LABELS: tuple[str, ...] = (
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


class TreeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every rule the tree manager follows.

    Defaults are OA's (``backend/oasst_backend/config.py``).
    """

    # --- Tree growth -------------------------------------------------------------------------
    # How many trees grow at once per language, how big the waiting/review queues may get, and
    # the shape of a tree: depth (root = 0), fan-out per prompter parent (assistant parents are
    # further limited by num_prompter_replies) and how many accepted messages make a tree ready
    # for ranking (optionally a random goal in [min_goal_tree_size, goal_tree_size] per tree).
    max_active_trees: int = 10
    max_initial_prompt_review: int = 100
    max_tree_depth: int = 3
    max_children_count: int = 3
    num_prompter_replies: int = 1
    goal_tree_size: int = 12
    random_goal_tree_size: bool = False
    min_goal_tree_size: int = 5

    # --- Review ------------------------------------------------------------------------------
    # How many label reviews decide a message, and the probability that a review task uses the
    # full label list rather than the simple spam check (OA overrides the prompter-reply value
    # to 0.1 at run time; we do not).
    num_reviews_initial_prompt: int = 3
    num_reviews_reply: int = 3
    p_full_labeling_review_prompt: float = 1.0
    p_full_labeling_review_reply_assistant: float = 1.0
    p_full_labeling_review_reply_prompter: float = 0.25

    # --- Auto-moderation -------------------------------------------------------------------
    # Counts (>=) of _skip_reply and red_flag emojis at which a tree is halted / a message is
    # removed without a moderator.
    auto_mod_enabled: bool = True
    auto_mod_max_skip_reply: int = 25
    auto_mod_red_flags: int = 4

    # --- Acceptance --------------------------------------------------------------------------
    # Strict '>' thresholds on 1 - mean(spam) - mean(lang_mismatch).
    acceptance_threshold_initial_prompt: float = 0.6
    acceptance_threshold_reply: float = 0.6

    # --- Ranking and backlog -----------------------------------------------------------------
    # Rankings needed per rankable parent, whether prompter replies are ranked too, and how
    # backlog trees get activated (by chance when a tree finishes, or to keep a minimum number
    # of open rankings per language; 0 disables the latter).
    num_required_rankings: int = 3
    rank_prompter_replies: bool = False
    p_activate_backlog_tree: float = 0.1
    min_active_rankings_per_lang: int = 0

    # --- Labels ------------------------------------------------------------------------------
    # Full-mode label lists per message kind and the labels a submission must contain. Names
    # must come from the catalogue in domain/labels.py; mandatory ⊆ full.
    labels_initial_prompt: tuple[str, ...] = _PROMPT_LABELS
    labels_assistant_reply: tuple[str, ...] = _ASSISTANT_LABELS
    labels_prompter_reply: tuple[str, ...] = _PROMPT_LABELS
    mandatory_labels_initial_prompt: tuple[str, ...] = ("spam",)
    mandatory_labels_assistant_reply: tuple[str, ...] = ("spam",)
    mandatory_labels_prompter_reply: tuple[str, ...] = ("spam",)

    # --- Target selection --------------------------------------------------------------------
    # Parents with 0 < children < lonely_children_count are "lonely" and preferred for reply
    # tasks with probability p_lonely_child_extension.
    lonely_children_count: int = 2
    p_lonely_child_extension: float = 0.75

    # --- Per-user limits and the prompt queue ------------------------------------------------
    # Window (seconds) for open reply tasks that block a parent and for the pending-task limit;
    # the per-language cap on prompts waiting in the lottery; languages that get no new
    # initial-prompt tasks (comma list, see disabled_langs).
    recent_tasks_span_sec: int = 300
    max_pending_tasks_per_user: int = 8
    max_prompt_lottery_waiting: int = 250
    init_prompt_disabled_langs: str = ""

    # --- Settings that are domain rules (OA's Settings, not TreeManagerConfiguration) -------
    # Longest message text in characters, how long a handed-out task stays valid, and the
    # window in which an identical text from the same user is rejected as a duplicate.
    message_size_limit: int = 2000
    task_validity_minutes: int = 2880
    duplicate_message_filter_window_minutes: int = 120
    # Images a prompt or prompter reply may carry (domain.model.images).
    max_images_per_message: int = 4

    # ------------------------------------------------------------------------------------------
    _PROBABILITY_FIELDS: ClassVar[tuple[str, ...]] = (
        "p_full_labeling_review_prompt",
        "p_full_labeling_review_reply_assistant",
        "p_full_labeling_review_reply_prompter",
        "acceptance_threshold_initial_prompt",
        "acceptance_threshold_reply",
        "p_activate_backlog_tree",
        "p_lonely_child_extension",
    )
    _POSITIVE_FIELDS: ClassVar[tuple[str, ...]] = (
        "max_active_trees",
        "max_tree_depth",
        "max_children_count",
        "num_prompter_replies",
        "goal_tree_size",
        "min_goal_tree_size",
        "num_reviews_initial_prompt",
        "num_reviews_reply",
        "auto_mod_max_skip_reply",
        "auto_mod_red_flags",
        "num_required_rankings",
        "lonely_children_count",
        "recent_tasks_span_sec",
        "max_pending_tasks_per_user",
        "message_size_limit",
        "task_validity_minutes",
    )
    _NON_NEGATIVE_FIELDS: ClassVar[tuple[str, ...]] = (
        "max_images_per_message",
        "max_initial_prompt_review",
        "max_prompt_lottery_waiting",
        "min_active_rankings_per_lang",
        "duplicate_message_filter_window_minutes",
    )
    _BOOL_FIELDS: ClassVar[tuple[str, ...]] = (
        "random_goal_tree_size",
        "auto_mod_enabled",
        "rank_prompter_replies",
    )
    _LABEL_FIELDS: ClassVar[tuple[str, ...]] = (
        "labels_initial_prompt",
        "labels_assistant_reply",
        "labels_prompter_reply",
        "mandatory_labels_initial_prompt",
        "mandatory_labels_assistant_reply",
        "mandatory_labels_prompter_reply",
    )

    def __post_init__(self) -> None:
        self.validate()

    # --- derived values ----------------------------------------------------------------------
    @property
    def disabled_langs(self) -> frozenset[str]:
        """``init_prompt_disabled_langs`` as a set: comma list, items stripped, empties dropped."""
        return frozenset(
            part.strip() for part in self.init_prompt_disabled_langs.split(",") if part.strip()
        )

    # --- validation --------------------------------------------------------------------------
    def validate(self) -> TreeConfig:
        """Raise ConfigError naming the first offending field; return self when valid."""
        for name in self._PROBABILITY_FIELDS:
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, Real)
                or not math.isfinite(float(value))
            ):
                _fail(f"{name} = {value!r} must be a number within [0, 1]")
            if not 0.0 <= float(value) <= 1.0:
                _fail(f"{name} = {value!r} must be within [0, 1]")
        for names, low in ((self._POSITIVE_FIELDS, 1), (self._NON_NEGATIVE_FIELDS, 0)):
            for name in names:
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int):
                    _fail(f"{name} = {value!r} must be an integer >= {low}")
                if value < low:
                    _fail(f"{name} = {value!r} must be >= {low}")
        for name in self._BOOL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                _fail(f"{name} = {value!r} must be a boolean")
        if not isinstance(self.init_prompt_disabled_langs, str):
            _fail(
                f"init_prompt_disabled_langs = {self.init_prompt_disabled_langs!r} "
                "must be a comma-separated string"
            )
        if self.min_goal_tree_size > self.goal_tree_size:
            _fail(
                f"min_goal_tree_size = {self.min_goal_tree_size} must be <= "
                f"goal_tree_size = {self.goal_tree_size}"
            )
        for name in self._LABEL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                _fail(f"{name} = {value!r} must be a tuple of label names")
            unknown = [v for v in value if v not in LABEL_NAMES]
            if unknown:
                _fail(f"{name} contains unknown label(s) {', '.join(map(repr, unknown))}")
        for message_kind in ("initial_prompt", "assistant_reply", "prompter_reply"):
            full = set(getattr(self, f"labels_{message_kind}"))
            mandatory = getattr(self, f"mandatory_labels_{message_kind}")
            extra = [v for v in mandatory if v not in full]
            if extra:
                _fail(
                    f"mandatory_labels_{message_kind} contains {', '.join(map(repr, extra))} "
                    f"which is not in labels_{message_kind}"
                )
        return self

    # --- constructors ------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return cls.__struct_fields__

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TreeConfig:
        """Build from plain data, converting loosely ("3" -> 3, "true" -> True).

        Label lists may be sequences or comma-separated strings. Unknown fields and values of
        the wrong type raise ConfigError naming the field.
        """
        if not isinstance(data, Mapping):
            _fail(f"expected a mapping of field names to values, got {type(data).__name__}")
        known = set(cls.__struct_fields__)
        prepared: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                _fail(f"unknown field {key!r}")
            if key in cls._LABEL_FIELDS and isinstance(value, str):
                value = _split_label_list(key, value)
            elif key == "init_prompt_disabled_langs" and isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            prepared[key] = value
        try:
            return msgspec.convert(prepared, type=cls, strict=False)
        except msgspec.ValidationError as exc:
            _fail(_describe_validation_error(exc))

    @classmethod
    def from_env(cls, environ: Mapping[str, str], prefix: str = ENV_PREFIX) -> TreeConfig:
        """Build from ``<prefix><FIELD>`` variables (matched case-insensitively); others are
        ignored, an unknown field after the prefix is a ConfigError."""
        return cls.from_mapping(cls._env_values(environ, prefix))

    @classmethod
    def from_toml(
        cls,
        text: str,
        env: Mapping[str, str] | None = None,
        prefix: str = ENV_PREFIX,
    ) -> TreeConfig:
        """Build from TOML text, values top-level or in a ``[tree]`` table; ``env`` values with
        ``prefix`` override the file. Other top-level tables are ignored (other components')."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            _fail(f"cannot parse TOML: {exc}")
        data: dict[str, Any] = {k: v for k, v in document.items() if not isinstance(v, dict)}
        tree = document.get("tree")
        if isinstance(tree, dict):
            for key, value in tree.items():
                if key in data:
                    _fail(f"field {key!r} is given both at top level and in [tree]")
                data[key] = value
        if env is not None:
            data.update(cls._env_values(env, prefix))
        return cls.from_mapping(data)

    @classmethod
    def _env_values(cls, environ: Mapping[str, str], prefix: str) -> dict[str, str]:
        fields = {name.upper(): name for name in cls.__struct_fields__}
        upper_prefix = prefix.upper()
        values: dict[str, str] = {}
        for key, value in environ.items():
            if not key.upper().startswith(upper_prefix):
                continue
            suffix = key[len(prefix) :]
            name = fields.get(suffix.upper())
            if name is None:
                _fail(f"unknown field {suffix.lower()!r} (environment variable {key})")
            values[name] = value
        return values


# --- helpers ---------------------------------------------------------------------------------
def _fail(detail: str) -> NoReturn:
    raise ConfigError(f"invalid configuration: {detail}")


def _split_label_list(field: str, text: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            _fail(f"{field} = {text!r} is not a valid list of label names")
        if not isinstance(parsed, list):
            _fail(f"{field} = {text!r} is not a valid list of label names")
        return parsed
    return [part.strip() for part in stripped.split(",") if part.strip()]


_PATH_RE = re.compile(
    r"^(?P<what>.*?)\s*-\s*at\s*`\$\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^`]*)`$"
)
_UNKNOWN_RE = re.compile(r"unknown field `(?P<field>[^`]*)`")


def _describe_validation_error(exc: msgspec.ValidationError) -> str:
    message = str(exc)
    match = _PATH_RE.match(message)
    if match:
        where = match["field"] + match["rest"]
        return f"{where}: {match['what']}"
    match = _UNKNOWN_RE.search(message)
    if match:
        return f"unknown field {match['field']!r}"
    return message

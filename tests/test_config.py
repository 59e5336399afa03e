"""TreeConfig: OA defaults, loading from mappings / env / TOML, validation, immutability."""

from __future__ import annotations

import msgspec
import pytest

from domain.model.config import TreeConfig
from domain.model.errors import ConfigError

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

# Reference §3 table (OA's TreeManagerConfiguration defaults) plus the three Settings values.
OA_DEFAULTS = {
    "max_active_trees": 10,
    "max_initial_prompt_review": 100,
    "max_tree_depth": 3,
    "max_children_count": 3,
    "num_prompter_replies": 1,
    "goal_tree_size": 12,
    "random_goal_tree_size": False,
    "min_goal_tree_size": 5,
    "num_reviews_initial_prompt": 3,
    "num_reviews_reply": 3,
    "auto_mod_enabled": True,
    "auto_mod_max_skip_reply": 25,
    "auto_mod_red_flags": 4,
    "p_full_labeling_review_prompt": 1.0,
    "p_full_labeling_review_reply_assistant": 1.0,
    "p_full_labeling_review_reply_prompter": 0.25,
    "acceptance_threshold_initial_prompt": 0.6,
    "acceptance_threshold_reply": 0.6,
    "num_required_rankings": 3,
    "p_activate_backlog_tree": 0.1,
    "min_active_rankings_per_lang": 0,
    "labels_initial_prompt": PROMPT_LABELS,
    "labels_assistant_reply": ASSISTANT_LABELS,
    "labels_prompter_reply": PROMPT_LABELS,
    "mandatory_labels_initial_prompt": ("spam",),
    "mandatory_labels_assistant_reply": ("spam",),
    "mandatory_labels_prompter_reply": ("spam",),
    "rank_prompter_replies": False,
    "lonely_children_count": 2,
    "p_lonely_child_extension": 0.75,
    "recent_tasks_span_sec": 300,
    "max_pending_tasks_per_user": 8,
    "max_prompt_lottery_waiting": 250,
    "init_prompt_disabled_langs": "",
    "message_size_limit": 2000,
    "task_validity_minutes": 2880,
    "duplicate_message_filter_window_minutes": 120,
    "max_images_per_message": 4,  # ours, not OA's: images on messages
}

THRESHOLD_FIELDS = [
    "acceptance_threshold_initial_prompt",
    "acceptance_threshold_reply",
    "p_full_labeling_review_prompt",
    "p_full_labeling_review_reply_assistant",
    "p_full_labeling_review_reply_prompter",
    "p_activate_backlog_tree",
    "p_lonely_child_extension",
]
COUNT_FIELDS = [
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
]
NON_NEGATIVE_FIELDS = [
    "max_initial_prompt_review",
    "max_prompt_lottery_waiting",
    "min_active_rankings_per_lang",
    "duplicate_message_filter_window_minutes",
]
LABEL_FIELDS = [
    "labels_initial_prompt",
    "labels_assistant_reply",
    "labels_prompter_reply",
    "mandatory_labels_initial_prompt",
    "mandatory_labels_assistant_reply",
    "mandatory_labels_prompter_reply",
]


def _env(**values: str) -> dict[str, str]:
    return {f"DATAENGINE_TREE__{k.upper()}": v for k, v in values.items()}


# --- defaults -------------------------------------------------------------------------------


def test_field_set_is_exactly_oa_plus_settings():
    assert set(TreeConfig.__struct_fields__) == set(OA_DEFAULTS)


@pytest.mark.parametrize("field,expected", sorted(OA_DEFAULTS.items()))
def test_default_equals_oa(field, expected):
    value = getattr(TreeConfig(), field)
    assert value == expected
    assert type(value) is type(expected)


def test_default_label_lists_are_tuples_and_mandatory_is_spam():
    cfg = TreeConfig()
    assert cfg.labels_prompter_reply == cfg.labels_initial_prompt
    assert "fails_task" in cfg.labels_assistant_reply
    assert "fails_task" not in cfg.labels_initial_prompt
    assert "helpfulness" in cfg.labels_assistant_reply
    assert "helpfulness" not in cfg.labels_prompter_reply


def test_defaults_pass_validation_and_return_self():
    cfg = TreeConfig()
    assert cfg.validate() is cfg


# --- disabled_langs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", frozenset()),
        ("de", frozenset({"de"})),
        (" de , fr,,  ", frozenset({"de", "fr"})),
        (",", frozenset()),
    ],
)
def test_disabled_langs(text, expected):
    assert TreeConfig(init_prompt_disabled_langs=text).disabled_langs == expected


# --- from_mapping -----------------------------------------------------------------------------


def test_from_mapping_empty_gives_defaults():
    assert TreeConfig.from_mapping({}) == TreeConfig()


def test_from_mapping_converts_loosely():
    cfg = TreeConfig.from_mapping(
        {
            "max_tree_depth": "5",
            "auto_mod_enabled": "false",
            "rank_prompter_replies": "true",
            "p_activate_backlog_tree": "0.5",
            "acceptance_threshold_reply": 1,
            "labels_initial_prompt": ["spam", "quality"],
        }
    )
    assert cfg.max_tree_depth == 5
    assert cfg.auto_mod_enabled is False
    assert cfg.rank_prompter_replies is True
    assert cfg.p_activate_backlog_tree == 0.5
    assert cfg.acceptance_threshold_reply == 1.0
    assert cfg.labels_initial_prompt == ("spam", "quality")


def test_from_mapping_label_list_as_comma_string():
    cfg = TreeConfig.from_mapping({"labels_prompter_reply": " spam, lang_mismatch ,quality,"})
    assert cfg.labels_prompter_reply == ("spam", "lang_mismatch", "quality")


def test_from_mapping_unknown_field_names_it():
    with pytest.raises(ConfigError, match="max_tree_dept") as info:
        TreeConfig.from_mapping({"max_tree_dept": 4})
    assert "unknown field" in info.value.message


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_tree_depth", "deep"),
        ("max_tree_depth", 2.5),
        ("auto_mod_enabled", "maybe"),
        ("acceptance_threshold_reply", "high"),
        ("labels_initial_prompt", [1, 2]),
        ("init_prompt_disabled_langs", 3),
    ],
)
def test_from_mapping_type_error_names_field(field, value):
    with pytest.raises(ConfigError, match=field):
        TreeConfig.from_mapping({field: value})


def test_from_mapping_rejects_non_mapping():
    with pytest.raises(ConfigError):
        TreeConfig.from_mapping(["max_tree_depth", 3])  # type: ignore[arg-type]


def test_config_error_has_code():
    with pytest.raises(ConfigError) as info:
        TreeConfig.from_mapping({"nope": 1})
    assert info.value.error_code is not None
    assert info.value.message.startswith("invalid configuration:")


# --- from_env ---------------------------------------------------------------------------------


def test_env_overrides_ints_floats_bools_and_label_lists():
    environ = {
        **_env(
            max_tree_depth="5",
            goal_tree_size="15",
            p_full_labeling_review_reply_prompter="0.1",
            acceptance_threshold_initial_prompt="0.5",
            random_goal_tree_size="true",
            auto_mod_enabled="0",
            labels_initial_prompt="spam,lang_mismatch,quality",
            mandatory_labels_initial_prompt="spam, lang_mismatch",
            init_prompt_disabled_langs="de,fr",
        ),
        "PATH": "/usr/bin",
        "DATAENGINE_OTHER__X": "1",
    }
    cfg = TreeConfig.from_env(environ)
    assert cfg.max_tree_depth == 5
    assert cfg.goal_tree_size == 15
    assert cfg.p_full_labeling_review_reply_prompter == 0.1
    assert cfg.acceptance_threshold_initial_prompt == 0.5
    assert cfg.random_goal_tree_size is True
    assert cfg.auto_mod_enabled is False
    assert cfg.labels_initial_prompt == ("spam", "lang_mismatch", "quality")
    assert cfg.mandatory_labels_initial_prompt == ("spam", "lang_mismatch")
    assert cfg.disabled_langs == frozenset({"de", "fr"})
    # untouched fields keep OA defaults
    assert cfg.max_active_trees == 10


def test_env_keys_match_case_insensitively():
    cfg = TreeConfig.from_env({"dataengine_tree__Max_Tree_Depth": "4"})
    assert cfg.max_tree_depth == 4


def test_env_without_matching_keys_gives_defaults():
    environ = {"HOME": "/root", "TREE_MANAGER__MAX_TREE_DEPTH": "9"}
    assert TreeConfig.from_env(environ) == TreeConfig()


def test_env_custom_prefix():
    cfg = TreeConfig.from_env({"TREE_MANAGER__MAX_TREE_DEPTH": "5"}, prefix="TREE_MANAGER__")
    assert cfg.max_tree_depth == 5


def test_env_unknown_field_is_error():
    with pytest.raises(ConfigError, match="max_tree_dept"):
        TreeConfig.from_env(_env(max_tree_dept="5"))


def test_env_bad_value_names_field():
    with pytest.raises(ConfigError, match="num_reviews_reply"):
        TreeConfig.from_env(_env(num_reviews_reply="three"))


def test_env_invalid_value_runs_validation():
    with pytest.raises(ConfigError, match="acceptance_threshold_reply"):
        TreeConfig.from_env(_env(acceptance_threshold_reply="1.5"))


# --- from_toml --------------------------------------------------------------------------------

TOP_LEVEL_TOML = """
max_tree_depth = 5
goal_tree_size = 15
p_activate_backlog_tree = 0.2
auto_mod_enabled = false
labels_initial_prompt = ["spam", "lang_mismatch", "quality"]
init_prompt_disabled_langs = "de,fr"
"""

TREE_TABLE_TOML = """
[server]
port = 8080

[tree]
max_tree_depth = 5
goal_tree_size = 15
p_activate_backlog_tree = 0.2
auto_mod_enabled = false
labels_initial_prompt = ["spam", "lang_mismatch", "quality"]
init_prompt_disabled_langs = "de,fr"
"""


@pytest.mark.parametrize("text", [TOP_LEVEL_TOML, TREE_TABLE_TOML], ids=["top-level", "tree-table"])
def test_toml(text):
    cfg = TreeConfig.from_toml(text)
    assert cfg.max_tree_depth == 5
    assert cfg.goal_tree_size == 15
    assert cfg.p_activate_backlog_tree == 0.2
    assert cfg.auto_mod_enabled is False
    assert cfg.labels_initial_prompt == ("spam", "lang_mismatch", "quality")
    assert cfg.disabled_langs == frozenset({"de", "fr"})
    assert cfg.num_reviews_reply == 3


@pytest.mark.parametrize("text", [TOP_LEVEL_TOML, TREE_TABLE_TOML], ids=["top-level", "tree-table"])
def test_env_overrides_toml(text):
    cfg = TreeConfig.from_toml(
        text,
        env={
            **_env(max_tree_depth="7", labels_initial_prompt="spam,quality", num_reviews_reply="4"),
            "UNRELATED": "x",
        },
    )
    assert cfg.max_tree_depth == 7
    assert cfg.labels_initial_prompt == ("spam", "quality")
    assert cfg.num_reviews_reply == 4
    assert cfg.goal_tree_size == 15  # from the file


def test_empty_toml_gives_defaults():
    assert TreeConfig.from_toml("") == TreeConfig()


def test_bad_toml_is_config_error():
    with pytest.raises(ConfigError, match="TOML"):
        TreeConfig.from_toml("max_tree_depth = = 3")


def test_toml_unknown_field_is_error():
    with pytest.raises(ConfigError, match="bogus"):
        TreeConfig.from_toml("[tree]\nbogus = 1\n")


def test_toml_field_in_both_places_is_error():
    with pytest.raises(ConfigError, match="max_tree_depth"):
        TreeConfig.from_toml("max_tree_depth = 4\n[tree]\nmax_tree_depth = 5\n")


def test_toml_validation_applies():
    with pytest.raises(ConfigError, match="goal_tree_size"):
        TreeConfig.from_toml("[tree]\ngoal_tree_size = 0\n")


# --- validation rules -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1.5, -0.1])
@pytest.mark.parametrize("field", THRESHOLD_FIELDS)
def test_probability_out_of_range(field, value):
    with pytest.raises(ConfigError, match=field) as info:
        TreeConfig(**{field: value})
    assert "[0, 1]" in info.value.message
    with pytest.raises(ConfigError, match=field):
        TreeConfig.from_mapping({field: value})


@pytest.mark.parametrize("field", THRESHOLD_FIELDS)
def test_probability_bounds_are_inclusive(field):
    assert getattr(TreeConfig(**{field: 0.0}), field) == 0.0
    assert getattr(TreeConfig(**{field: 1.0}), field) == 1.0


@pytest.mark.parametrize("field", THRESHOLD_FIELDS)
def test_probability_nan_rejected(field):
    with pytest.raises(ConfigError, match=field):
        TreeConfig(**{field: float("nan")})


def test_threshold_message_format():
    with pytest.raises(ConfigError) as info:
        TreeConfig.from_mapping({"acceptance_threshold_reply": 1.5})
    assert info.value.message == (
        "invalid configuration: acceptance_threshold_reply = 1.5 must be within [0, 1]"
    )


@pytest.mark.parametrize("field", COUNT_FIELDS)
def test_count_must_be_positive(field):
    kwargs = {field: 0}
    with pytest.raises(ConfigError, match=field):
        TreeConfig(**kwargs)
    with pytest.raises(ConfigError, match=field):
        TreeConfig.from_mapping(kwargs)


@pytest.mark.parametrize("field", COUNT_FIELDS)
def test_count_of_one_is_fine(field):
    extra = {"min_goal_tree_size": 1} if field == "goal_tree_size" else {}
    assert getattr(TreeConfig(**{field: 1, **extra}), field) == 1


@pytest.mark.parametrize("field", NON_NEGATIVE_FIELDS)
def test_non_negative_fields(field):
    assert getattr(TreeConfig(**{field: 0}), field) == 0
    with pytest.raises(ConfigError, match=field):
        TreeConfig(**{field: -1})


@pytest.mark.parametrize("field", COUNT_FIELDS + NON_NEGATIVE_FIELDS)
def test_count_rejects_bool_and_float_on_direct_construction(field):
    with pytest.raises(ConfigError, match=field):
        TreeConfig(**{field: True})
    with pytest.raises(ConfigError, match=field):
        TreeConfig(**{field: 2.5})


def test_min_goal_tree_size_not_above_goal():
    with pytest.raises(ConfigError, match="min_goal_tree_size"):
        TreeConfig(goal_tree_size=4, min_goal_tree_size=5)
    cfg = TreeConfig(goal_tree_size=5, min_goal_tree_size=5)
    assert cfg.goal_tree_size == cfg.min_goal_tree_size == 5


@pytest.mark.parametrize("field", LABEL_FIELDS)
def test_unknown_label_names_field_and_label(field):
    with pytest.raises(ConfigError, match=field) as info:
        TreeConfig.from_mapping({field: ["spam", "excessive_harm"]})
    assert "excessive_harm" in info.value.message


@pytest.mark.parametrize("kind", ["initial_prompt", "assistant_reply", "prompter_reply"])
def test_mandatory_must_be_subset_of_full(kind):
    with pytest.raises(ConfigError, match=f"mandatory_labels_{kind}"):
        TreeConfig.from_mapping({f"mandatory_labels_{kind}": ["spam", "moral_judgement"]})
    with pytest.raises(ConfigError, match=f"mandatory_labels_{kind}"):
        TreeConfig.from_mapping({f"labels_{kind}": "quality,lang_mismatch"})


def test_fails_task_is_not_a_prompt_label_by_default_but_may_be_configured():
    cfg = TreeConfig.from_mapping(
        {
            "labels_initial_prompt": "spam,fails_task",
            "mandatory_labels_initial_prompt": "spam,fails_task",
        }
    )
    assert cfg.mandatory_labels_initial_prompt == ("spam", "fails_task")


def test_label_list_must_be_tuple_on_direct_construction():
    with pytest.raises(ConfigError, match="labels_initial_prompt"):
        TreeConfig(labels_initial_prompt=["spam"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field", ["random_goal_tree_size", "auto_mod_enabled", "rank_prompter_replies"]
)
def test_bool_fields_must_be_bool(field):
    with pytest.raises(ConfigError, match=field):
        TreeConfig(**{field: 1})


# --- immutability -----------------------------------------------------------------------------


def test_frozen():
    cfg = TreeConfig()
    with pytest.raises(AttributeError):
        cfg.max_tree_depth = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.labels_initial_prompt = ("spam",)  # type: ignore[misc]
    assert cfg.max_tree_depth == 3


def test_label_lists_are_immutable_tuples():
    cfg = TreeConfig.from_mapping({"labels_initial_prompt": ["spam", "quality"]})
    assert isinstance(cfg.labels_initial_prompt, tuple)


def test_replace_validates_too():
    with pytest.raises(ConfigError, match="max_tree_depth"):
        msgspec.structs.replace(TreeConfig(), max_tree_depth=0)


def test_hashable_and_equal_by_value():
    assert TreeConfig() == TreeConfig()
    assert hash(TreeConfig()) == hash(TreeConfig())
    assert TreeConfig(max_tree_depth=5) != TreeConfig()

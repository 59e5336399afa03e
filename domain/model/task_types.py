"""Open-Assistant's task types and what completing each one means."""

from __future__ import annotations

from enum import StrEnum

from domain.model.message import Role


class TaskType(StrEnum):
    RANDOM = "random"
    SUMMARIZE_STORY = "summarize_story"
    RATE_SUMMARY = "rate_summary"
    INITIAL_PROMPT = "initial_prompt"
    PROMPTER_REPLY = "prompter_reply"
    ASSISTANT_REPLY = "assistant_reply"
    RANK_INITIAL_PROMPTS = "rank_initial_prompts"
    RANK_PROMPTER_REPLIES = "rank_prompter_replies"
    RANK_ASSISTANT_REPLIES = "rank_assistant_replies"
    LABEL_INITIAL_PROMPT = "label_initial_prompt"
    LABEL_ASSISTANT_REPLY = "label_assistant_reply"
    LABEL_PROMPTER_REPLY = "label_prompter_reply"


T = TaskType
PROMPT_TASKS = frozenset({T.INITIAL_PROMPT})
REPLY_TASKS = frozenset({T.PROMPTER_REPLY, T.ASSISTANT_REPLY})
LABEL_TASKS = frozenset({T.LABEL_INITIAL_PROMPT, T.LABEL_ASSISTANT_REPLY, T.LABEL_PROMPTER_REPLY})
RANKING_TASKS = frozenset({T.RANK_ASSISTANT_REPLIES, T.RANK_PROMPTER_REPLIES})
# Declared by OA's protocol but never generated (availability is always 0).
NEVER_GENERATED = frozenset({T.SUMMARIZE_STORY, T.RATE_SUMMARY, T.RANK_INITIAL_PROMPTS})

REPLY_ROLE = {T.ASSISTANT_REPLY: Role.ASSISTANT, T.PROMPTER_REPLY: Role.PROMPTER}

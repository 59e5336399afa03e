"""Request and response bodies of the OA v1 protocol, as msgspec Structs.

Field names, tags and defaults are OA's (``oasst_shared/schemas/protocol.py``), so OA
front ends decode our answers unchanged; the same Structs validate requests and feed
the OpenAPI document. Unknown fields in a request are ignored, as pydantic did (the
text front end sends an extra ``task_id`` with replies).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Union
from uuid import UUID

from msgspec import Meta, Struct

from domain.model.input_rules import MAX_DISPLAY_NAME_LENGTH, MAX_USERNAME_LENGTH

AuthMethod = Literal["discord", "google", "local", "system"]
UserSortKey = Literal["username", "display_name"]
TaskRequestType = Literal[
    "random",
    "summarize_story",
    "rate_summary",
    "initial_prompt",
    "prompter_reply",
    "assistant_reply",
    "rank_initial_prompts",
    "rank_prompter_replies",
    "rank_assistant_replies",
    "label_initial_prompt",
    "label_assistant_reply",
    "label_prompter_reply",
]


class Error(Struct):
    message: str
    error_code: int


# ---------------------------------------------------------------- users
# domain.model.input_rules, stated for the document and checked at decoding: no control
# character, not blank, OA's column lengths
_TEXT = r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]"
_NAME_PATTERN = rf"^{_TEXT}*[^\s\x00-\x1f\x7f-\x9f\u2028\u2029]{_TEXT}*$"
Username = Annotated[str, Meta(min_length=1, max_length=MAX_USERNAME_LENGTH, pattern=_NAME_PATTERN)]
DisplayName = Annotated[
    str, Meta(min_length=1, max_length=MAX_DISPLAY_NAME_LENGTH, pattern=_NAME_PATTERN)
]


class User(Struct, kw_only=True):
    id: Username
    display_name: DisplayName
    auth_method: AuthMethod


class CreateFrontendUserRequest(User, kw_only=True):
    show_on_leaderboard: bool = True
    enabled: bool = True
    tos_acceptance: bool | None = None
    notes: str | None = None


class FrontEndUser(User, kw_only=True):
    user_id: UUID
    enabled: bool
    deleted: bool
    notes: str
    created_date: datetime | None = None
    show_on_leaderboard: bool = True
    streak_days: int | None = None
    streak_last_day_date: datetime | None = None
    last_activity_date: datetime | None = None
    tos_acceptance_date: datetime | None = None


# ---------------------------------------------------------------- task requests
class TaskRequest(Struct, kw_only=True):
    type: TaskRequestType = "random"
    user: User | None = None
    collective: bool = False
    lang: str | None = None


class TaskAck(Struct, kw_only=True):
    message_id: str


class TaskNAck(Struct, kw_only=True):
    reason: str | None = None


class Interaction(Struct, kw_only=True, tag_field="type"):
    user: User


class TextReplyToMessage(Interaction, tag="text_reply_to_message", kw_only=True):
    message_id: str  # the frontend id the task was acknowledged with
    user_message_id: str  # the frontend id of the new message
    text: str
    lang: str | None = None
    # uploads (POST /api/v1/images) a prompt or prompter reply carries; OA clients omit it
    image_ids: list[UUID] = []


class MessageRanking(Interaction, tag="message_ranking", kw_only=True):
    message_id: str
    ranking: list[int]  # indices into the task's reply_messages, best first
    not_rankable: bool = False


class TextLabels(Interaction, tag="text_labels", kw_only=True):
    message_id: UUID  # the backend id of the labelled message
    labels: dict[str, float]
    text: str = ""
    task_id: UUID | None = None
    is_report: bool | None = None


class MessageRating(Interaction, tag="message_rating", kw_only=True):
    message_id: str
    rating: int


AnyInteraction = Union[TextReplyToMessage, MessageRanking, TextLabels, MessageRating]  # noqa: UP007


class TaskDone(Struct, tag="task_done", tag_field="type"):
    id: UUID


# ---------------------------------------------------------------- tasks
class ImageInfo(Struct, kw_only=True):
    """An image a message carries; ``url`` fetches it (signed for the task's client)."""

    id: UUID
    sha256: str
    media_type: str
    width: int
    height: int
    size: int
    url: str


class ConversationMessage(Struct, kw_only=True):
    id: UUID | None
    user_id: UUID | None = None
    frontend_message_id: str | None = None
    text: str
    lang: str | None = None
    is_assistant: bool
    emojis: dict[str, int] = {}
    user_emojis: list[str] = []
    user_is_author: bool | None = None
    synthetic: bool | None = None
    # in task conversations: the message's images (None: not looked up, as in message reads)
    images: list[ImageInfo] | None = None


class Conversation(Struct, kw_only=True):
    messages: list[ConversationMessage]


class LabelDescription(Struct, kw_only=True):
    name: str
    widget: str
    display_text: str
    help_text: str | None = None


class Task(Struct, kw_only=True, tag_field="type"):
    id: UUID


class InitialPromptTask(Task, tag="initial_prompt", kw_only=True):
    hint: str | None = None


class _ReplyTask(Task, kw_only=True):
    conversation: Conversation
    message_tree_id: UUID
    parent_message_id: UUID


class PrompterReplyTask(_ReplyTask, tag="prompter_reply", kw_only=True):
    hint: str | None = None


class AssistantReplyTask(_ReplyTask, tag="assistant_reply", kw_only=True):
    pass


class _RankTask(Task, kw_only=True):
    conversation: Conversation
    replies: list[str]  # deprecated: the texts of reply_messages
    reply_messages: list[ConversationMessage]
    message_tree_id: UUID
    ranking_parent_id: UUID
    reveal_synthetic: bool = False


class RankAssistantRepliesTask(_RankTask, tag="rank_assistant_replies", kw_only=True):
    pass


class RankPrompterRepliesTask(_RankTask, tag="rank_prompter_replies", kw_only=True):
    pass


class _LabelTask(Task, kw_only=True):
    message_id: UUID
    message_tree_id: UUID
    valid_labels: list[str]
    mandatory_labels: list[str]
    mode: Literal["simple", "full"]
    disposition: Literal["quality", "spam"]
    labels: list[LabelDescription]
    conversation: Conversation


class LabelInitialPromptTask(_LabelTask, tag="label_initial_prompt", kw_only=True):
    prompt: str  # deprecated: the labelled text


class LabelAssistantReplyTask(_LabelTask, tag="label_assistant_reply", kw_only=True):
    reply: str  # deprecated: the labelled text
    reply_message: ConversationMessage | None = None


class LabelPrompterReplyTask(_LabelTask, tag="label_prompter_reply", kw_only=True):
    reply: str
    reply_message: ConversationMessage | None = None


AnyTask = Union[  # noqa: UP007
    InitialPromptTask,
    PrompterReplyTask,
    AssistantReplyTask,
    RankAssistantRepliesTask,
    RankPrompterRepliesTask,
    LabelInitialPromptTask,
    LabelAssistantReplyTask,
    LabelPrompterReplyTask,
]


# ---------------------------------------------------------------- labels, messages, trees
class FreeTextLabels(Struct, kw_only=True):
    """POST /text_labels/: OA's TextLabels without the interaction envelope."""

    user: User
    message_id: UUID
    labels: dict[str, float]
    text: str = ""
    task_id: UUID | None = None
    is_report: bool | None = None
    type: str = "text_labels"


class ValidLabelsResponse(Struct, kw_only=True):
    valid_labels: list[LabelDescription]


class Message(ConversationMessage, kw_only=True):
    parent_id: UUID | None
    created_date: datetime
    review_result: bool | None
    review_count: int
    deleted: bool
    edited: bool
    model_name: str | None
    message_tree_id: UUID
    ranking_count: int
    rank: int | None
    user: FrontEndUser | None = None  # the author, on request (include_user)


class MessagePage(Struct, kw_only=True):
    """A keyset page of messages; ``prev``/``next`` are cursors "<uuid>$<ISO time>"."""

    prev: str | None
    next: str | None
    sort_key: str = "created_date"
    order: Literal["asc", "desc"]
    items: list[Message]


class FrontEndUserPage(Struct, kw_only=True):
    """A keyset page of users; ``prev``/``next`` are cursors "<uuid>$<sort key value>"."""

    prev: str | None
    next: str | None
    sort_key: UserSortKey
    order: Literal["asc", "desc"]
    items: list[FrontEndUser]


class MessageTree(Struct, kw_only=True):
    id: UUID
    messages: list[Message]


class MessageTreeState(Struct, kw_only=True):
    message_tree_id: UUID
    state: str
    goal_tree_size: int
    max_depth: int
    max_children_count: int
    active: bool
    origin: str | None


class MessageEditRequest(Struct, kw_only=True):
    user: User
    new_content: str


class MessageEmojiRequest(Struct, kw_only=True):
    user: User
    emoji: str
    op: Literal["add", "remove", "toggle"] = "toggle"


class MessageRevision(Struct, kw_only=True):
    message_id: UUID
    revision: int
    text: str
    user_id: UUID | None
    created_date: datetime


class TreeEvent(Struct, kw_only=True):
    """One fact of a tree's history (beyond OA): where it sits in the log and who caused it."""

    position: int
    version: int
    type: str
    timestamp: datetime
    user_id: UUID | None
    client_id: UUID | None
    data: dict


class CreateApiClientRequest(Struct, kw_only=True):
    description: str
    frontend_type: str
    trusted: bool = False
    admin_email: str | None = None
    api_key: str | None = None
    enabled: bool = True


class Health(Struct, kw_only=True):
    status: str
    log_position: int
    readmodel_position: int
    lag: int = 0  # events the read models have still to apply
    reason: str | None = None  # why not ready: a stopped runner, a read model not the log's


class AuditDigest(Struct, kw_only=True):
    """The audit chain's digest (sha256 hex) covering the log up to ``position``."""

    position: int
    digest: str

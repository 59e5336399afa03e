"""Free labels and reports, and the label catalogue (OA's /text_labels endpoints)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from api.http import auth
from api.http import schemas as s
from api.http.errors import HttpError
from api.http.routing import Api, Call
from api.http.tasks import submit_labels
from domain.model.errors import ErrorCode, MessageNotFoundError
from domain.model.labels import (
    LABELS,
    REPORT_LABELS,
    MessageKind,
    TextLabel,
    all_labels_without_message,
    full_labels,
)
from projections.queries import messages as q


def describe(names: Iterable[str]) -> s.ValidLabelsResponse:
    return s.ValidLabelsResponse(
        valid_labels=[
            s.LabelDescription(
                name=LABELS[TextLabel(n)].name.value,
                widget=LABELS[TextLabel(n)].widget.value,
                display_text=LABELS[TextLabel(n)].display_text,
                help_text=LABELS[TextLabel(n)].help_text or None,
            )
            for n in names
        ]
    )


def post_labels(call: Call) -> None:
    body: s.FreeTextLabels = call.json(s.FreeTextLabels, strict=False)
    submit_labels(call, call.user(body.user), body)


async def valid_labels(call: Call) -> Any:
    raw = call.query("message_id")
    if not raw:
        return describe(all_labels_without_message())
    try:
        message_id = UUID(raw)
    except ValueError:
        raise HttpError(f"message {raw!r} not found", ErrorCode.MESSAGE_NOT_FOUND, 404) from None
    row = await call.read(q.shape, str(message_id))
    if row is None:
        raise MessageNotFoundError(f"message {message_id} not found")
    auth.check_owner(call.api_client, row[2])  # another client's message: 403 (issue 13)
    kind = (
        MessageKind.INITIAL_PROMPT
        if row[0]
        else MessageKind.ASSISTANT_REPLY
        if row[1] == "assistant"
        else MessageKind.PROMPTER_REPLY
    )
    return describe(full_labels(call.service.app.config, kind))


async def report_labels(call: Call) -> Any:
    return describe(label.value for label in REPORT_LABELS)


def register(api: Api) -> None:
    api.add(
        "POST",
        "/api/v1/text_labels/",
        post_labels,
        body=s.FreeTextLabels,
        status=204,
        summary="free labels or a report on a message (task_id for a task's labels)",
        tag="text_labels",
    )
    api.add(
        "GET",
        "/api/v1/text_labels/valid_labels",
        valid_labels,
        response=s.ValidLabelsResponse,
        query={"message_id": "labels for this message"},
        summary="labels valid for a message (or all)",
        tag="text_labels",
    )
    api.add(
        "GET",
        "/api/v1/text_labels/report_labels",
        report_labels,
        access="public",
        response=s.ValidLabelsResponse,
        summary="labels a report may use",
        tag="text_labels",
    )

"""`export data`: the rows a source imported, written back in its format from the log.

The source's DataImport record names, file by file and in file order, the tree each row
became and the row's system turn; the tree gives the texts, the labels (a completion's
review result) and the order of a pair (chosen was imported first). The imported messages
are found by their derived ids, so replies people added since do not change the row.
A tree that two files of the source share is written once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.model.data_import import DataImport, source_id
from domain.model.errors import MessageNotFoundError
from domain.model.message import Message, Role
from domain.model.tree import ConversationTree
from domain.service.application import DataEngine
from domain.service.importing.formats import RowError
from domain.service.importing.trees import message_id


def source_record(app: DataEngine, source: str) -> DataImport:
    try:
        record: DataImport = app.repository.get(source_id(source))
    except AggregateNotFoundError:
        raise RowError(f"nothing was imported under the source {source!r}") from None
    if not isinstance(record, DataImport):
        raise RowError(f"nothing was imported under the source {source!r}")
    return record


def export_rows(app: DataEngine, record: DataImport) -> Iterator[dict[str, Any]]:
    seen: set[UUID] = set()
    for file in record.files.values():
        for index, tree_id in zip(file.row_index, file.tree_ids):
            if tree_id in seen:
                continue
            seen.add(tree_id)
            tree: ConversationTree = app.repository.get(tree_id)
            yield row_of(tree, record.format, file.shape, file.systems.get(index))


def _imported(tree: ConversationTree) -> list[Message]:
    found: list[Message] = []
    while True:
        try:
            found.append(tree.message(message_id(tree.id, len(found))))
        except MessageNotFoundError:
            return found


def _chat(m: Message) -> dict[str, str]:
    return {"role": "user" if m.role is Role.PROMPTER else "assistant", "content": m.text}


def _conversation(system: str | None, messages: list[Message]) -> list[dict[str, str]]:
    head = [{"role": "system", "content": system}] if system is not None else []
    return head + [_chat(m) for m in messages]


def row_of(
    tree: ConversationTree, fmt: str, shape: dict[str, str], system: str | None
) -> dict[str, Any]:
    messages = _imported(tree)
    form = shape.get("form", "string")
    row: dict[str, Any]
    if fmt == "prompts":
        row = {shape["prompt"]: messages[0].text}
    elif fmt == "messages":
        row = {"messages": _conversation(system, messages)}
    elif fmt == "pairs" and form == "implicit":
        prompt, chosen, rejected = messages[:-2], messages[-2], messages[-1]
        row = {
            "chosen": _conversation(system, [*prompt, chosen]),
            "rejected": _conversation(system, [*prompt, rejected]),
        }
    else:
        replies = 2 if fmt == "pairs" else 1
        prompt, answers = messages[:-replies], messages[-replies:]
        if form == "string":
            row = {"prompt": prompt[0].text}
            texts: list[Any] = [m.text for m in answers]
        else:
            row = {"prompt": _conversation(system, prompt)}
            texts = [[_chat(m)] for m in answers]
        if fmt == "pairs":
            row["chosen"], row["rejected"] = texts
        else:
            row["completion"] = texts[0]
            if "label" in shape:
                row["label"] = answers[0].review_result is not False
    if "lang" in shape:
        row["lang"] = messages[0].lang
    return row

"""The TrainedModel aggregate: one entry of the models registry, named by its registry name.

A model is recorded once, with what it is (path, kind, base model), what it was trained on
(the dataset's log position and audit digest) and its headline metrics. The id is derived
from the name, so resolving a name is one lookup by id and needs no read model. Entries
are never overwritten: registering a name again with the same facts records nothing, and
with other facts it is refused, so a name always means the same weights in every
dataset, leaderboard and audit that mentions it.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.model.actor import SYSTEM, Actor
from domain.model.errors import InvalidModelError, ModelAlreadyRegisteredError
from domain.model.topics import keep_stored_topics


class ModelKind(StrEnum):
    """What a registered model is: the ``kind`` of ``TrainedModel.Registered`` (stored)."""

    SFT = "sft"
    RM = "rm"
    DPO = "dpo"
    KTO = "kto"
    RLHF = "rlhf"
    BASE = "base"  # a starting point that was not trained here
    EXTERNAL = "external"  # a model served elsewhere, known by name


KINDS: tuple[str, ...] = tuple(kind.value for kind in ModelKind)
MAX_NAME_LENGTH = 128


def check_name(name: Any) -> str:
    """A registry name: 1..128 printable characters, no whitespace (names end up in user
    names and frontend message ids, where invisible differences would make two models)."""
    if not isinstance(name, str) or not name:
        raise InvalidModelError("a model name must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidModelError(
            f"a model name has at most {MAX_NAME_LENGTH} characters, not {len(name)}"
        )
    bad = [c for c in name if c.isspace() or unicodedata.category(c)[0] in ("C", "Z")]
    if bad:
        raise InvalidModelError(
            f"a model name cannot contain whitespace or control characters ({name!r})"
        )
    return name


def model_id_for(name: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/models/{check_name(name)}")


def check_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    """Finite numbers by name (JSON has no NaN, and a headline number must compare)."""
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if not isinstance(key, str) or not key:
            raise InvalidModelError(f"metric names must be non-empty strings, not {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidModelError(f"metric {key!r} must be a number, not {value!r}")
        if not math.isfinite(value):
            raise InvalidModelError(f"metric {key!r} must be finite, not {value!r}")
        out[key] = float(value)
    return dict(sorted(out.items()))


class TrainedModel(Aggregate):
    # Set by Registered.apply; init=False: eventsourcing builds the model from its event.
    name: str = field(init=False)
    path: str = field(init=False)
    kind: ModelKind = field(init=False)
    base_model: str | None = field(init=False)
    dataset_position: int | None = field(init=False)
    dataset_digest: str | None = field(init=False)
    metrics: dict[str, float] = field(init=False)
    registered_by: Actor = field(init=False)
    registered_at: datetime = field(init=False)

    class Registered(Aggregate.Created):
        name: str
        path: str
        kind: ModelKind
        base_model: str | None
        dataset_position: int | None
        dataset_digest: str | None
        metrics: dict[str, float]
        user_id: UUID | None
        client_id: UUID | None

        def apply(self, model: TrainedModel) -> None:
            model.name = self.name
            model.path = self.path
            model.kind = ModelKind(self.kind)
            model.base_model = self.base_model
            model.dataset_position = self.dataset_position
            model.dataset_digest = self.dataset_digest
            model.metrics = dict(self.metrics)
            model.registered_by = Actor(self.user_id, self.client_id)
            model.registered_at = self.timestamp

    @staticmethod
    def facts(
        *,
        name: str,
        path: str,
        kind: ModelKind | str,
        base_model: str | None = None,
        dataset_position: int | None = None,
        dataset_digest: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The validated fields of a registration (what makes two registrations the same)."""
        check_name(name)
        if not isinstance(path, str) or not path.strip():
            raise InvalidModelError("a model needs a path (a folder or a hub name)")
        if kind not in KINDS:
            raise InvalidModelError(f"model kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if base_model is not None and (not isinstance(base_model, str) or not base_model.strip()):
            raise InvalidModelError("base_model, when given, must be a non-empty string")
        if dataset_position is not None and (
            isinstance(dataset_position, bool)
            or not isinstance(dataset_position, int)
            or dataset_position < 0
        ):
            raise InvalidModelError(
                f"dataset_position must be a log position (an int >= 0), not {dataset_position!r}"
            )
        if dataset_digest is not None and (
            not isinstance(dataset_digest, str) or not dataset_digest
        ):
            raise InvalidModelError("dataset_digest, when given, must be a non-empty string")
        return {
            "name": name,
            "path": path,
            "kind": ModelKind(kind),
            "base_model": base_model,
            "dataset_position": dataset_position,
            "dataset_digest": dataset_digest,
            "metrics": check_metrics(metrics),
        }

    @classmethod
    def register(cls, *, actor: Actor = SYSTEM, **fields: Any) -> TrainedModel:
        facts = cls.facts(**fields)
        return cls._create(
            cls.Registered,
            id=model_id_for(facts["name"]),
            **facts,
            user_id=actor.user_id,
            client_id=actor.client_id,
        )

    def current_facts(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "base_model": self.base_model,
            "dataset_position": self.dataset_position,
            "dataset_digest": self.dataset_digest,
            "metrics": dict(self.metrics),
        }

    def check_same(self, **fields: Any) -> None:
        """Registering again is a no-op when every fact matches (who asks does not matter)."""
        facts = self.facts(**fields)
        current = self.current_facts()
        differ = sorted(k for k in facts if facts[k] != current[k])
        if differ:
            raise ModelAlreadyRegisteredError(
                f"model {self.name!r} is already registered with other "
                f"{', '.join(differ)}; register the new weights under a new name"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.current_facts(),
            "id": str(self.id),
            "version": self.version,
            "registered_at": self.registered_at.isoformat(),
            "registered_by": {
                "user_id": _text(self.registered_by.user_id),
                "client_id": _text(self.registered_by.client_id),
            },
        }


def _text(value: UUID | None) -> str | None:
    return None if value is None else str(value)


# Stored under its pre-move topics (domain.model.topics).
keep_stored_topics(TrainedModel)

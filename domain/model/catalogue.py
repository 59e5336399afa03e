"""The catalogue of stored events, read off the aggregates themselves.

Every fact the system records is an event class nested in its aggregate, so the list of
events, their stored topics, fields and versions is introspected rather than written by
hand: EVENTS.md is rendered from it (``python -m projections.catalogue``) and consumers
that must treat every event (audit summaries, dataset replay) are checked against it.

Which nested classes are stored events: every event class of the aggregate except the
base class eventsourcing calls ``Event`` (never triggered itself) and the library's default
``Created`` class when the aggregate declares its own created event (``TreeStarted``,
``Registered``).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass

from eventsourcing.domain import Aggregate, CanInitAggregate, CanMutateAggregate
from eventsourcing.utils import get_topic

import domain.model
from domain.model.topics import nested_classes

# Fields every event has from eventsourcing itself; the catalogue lists the domain's.
BASE_FIELDS = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


@dataclass(frozen=True, slots=True)
class EventInfo:
    aggregate: str
    name: str  # the class name inside the aggregate, e.g. "TreeStarted"
    topic: str  # the stored topic (what the log holds)
    current_topic: str  # module:QualName where the class lives now
    class_version: int
    fields: tuple[tuple[str, str], ...]  # (name, annotation) in declaration order
    summary: str  # the docstring's first line, "" without one
    event_class: type

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic the class may be found under in a log: stored first."""
        if self.current_topic == self.topic:
            return (self.topic,)
        return (self.topic, self.current_topic)


def aggregates() -> list[type[Aggregate]]:
    """Every aggregate class defined in domain.model, in module then definition order."""
    found: list[type[Aggregate]] = []
    for module_info in pkgutil.iter_modules(domain.model.__path__, "domain.model."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Aggregate)
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


def event_classes(aggregate: type, base: type | None = None) -> list[type]:
    """The stored event classes nested in the aggregate, in definition order; with ``base``,
    those that are ``base`` or a subclass of it (e.g. every kind of state change)."""
    nested = [
        cls
        for cls in nested_classes(aggregate)[1:]
        if issubclass(cls, CanMutateAggregate) and cls.__name__ != "Event"
    ]
    declared_created = any(
        issubclass(cls, CanInitAggregate) and cls.__name__ != "Created" for cls in nested
    )
    return [
        cls
        for cls in nested
        if not (declared_created and cls.__name__ == "Created")
        and (base is None or issubclass(cls, base))
    ]


def current_topic(cls: type) -> str:
    """The topic by where the class lives now (eventsourcing's default), whatever it is stored
    under (domain.model.topics keeps moved classes' stored topics)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def topics_of(*classes: type) -> tuple[str, ...]:
    """The stored and current topics of the classes (a consumer matching topics in a log
    accepts both)."""
    out: list[str] = []
    for cls in classes:
        for topic in (get_topic(cls), current_topic(cls)):
            if topic not in out:
                out.append(topic)
    return tuple(out)


def _summary(cls: type) -> str:
    doc = vars(cls).get("__doc__") or ""
    if doc.startswith(f"{cls.__name__}("):  # the signature dataclasses put there
        return ""
    lines = doc.strip().splitlines()
    return lines[0].strip() if lines else ""


def describe(aggregate: type, cls: type) -> EventInfo:
    return EventInfo(
        aggregate=aggregate.__name__,
        name=cls.__qualname__.removeprefix(aggregate.__qualname__ + "."),
        topic=get_topic(cls),
        current_topic=current_topic(cls),
        class_version=int(getattr(cls, "class_version", 1)),
        fields=tuple(
            (
                f.name,
                f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)),
            )
            for f in dataclasses.fields(cls)
            if f.name not in BASE_FIELDS
        ),
        summary=_summary(cls),
        event_class=cls,
    )


def catalogue() -> list[EventInfo]:
    """Every stored event of every aggregate."""
    return [describe(agg, cls) for agg in aggregates() for cls in event_classes(agg)]

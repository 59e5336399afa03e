"""Stored topics are a contract: the name an event class is stored under never changes.

eventsourcing stores each event with a topic, by default ``module:QualName``, and
resolves it back to the class on read. A class that moves to another module would
therefore write under a new name while the log already holds the old one, and every
consumer matching topics (projections, dataset queries, audit summaries) would have to
know both. Instead a moved aggregate keeps its stored names:

* ``TOPIC`` on the aggregate and each of its event classes, which ``get_topic`` prefers
  to the module path, so new events are written under the same name as old ones;
* ``register_topic(old_module, new_module)``, so a stored name resolves even before
  anything has asked for the class's topic (eventsourcing's topic registration).

The table of moves lives here, in one place; ``tests/test_topic_contract.py`` reads logs
written before the move (``tests/fixtures/logs``) to keep it honest.
"""

from __future__ import annotations

import sys

from eventsourcing.utils import register_topic

# stored module name -> where its classes live now
MOVED_MODULES: dict[str, str] = {
    "domain.tree": "domain.model.tree",
    "domain.user": "domain.model.user",
    "domain.api_client": "domain.model.api_client",
    "domain.trained_model": "domain.model.trained_model",
}
_STORED_AS = {new: old for old, new in MOVED_MODULES.items()}


def nested_classes(cls: type) -> list[type]:
    """The class and every class defined inside it (its event classes), depth first."""
    found = [cls]
    for value in vars(cls).values():
        if isinstance(value, type) and value.__qualname__.startswith(cls.__qualname__ + "."):
            found += nested_classes(value)
    return found


def keep_stored_topics(aggregate: type) -> None:
    """Make the aggregate and its events keep the topics they were first stored under.

    Call at the bottom of the aggregate's module, before anything asks for a topic.
    """
    stored_module = _STORED_AS[aggregate.__module__]
    register_topic(stored_module, sys.modules[aggregate.__module__])
    for cls in nested_classes(aggregate):
        type.__setattr__(cls, "TOPIC", f"{stored_module}:{cls.__qualname__}")

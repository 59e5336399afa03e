"""A msgspec mapper for eventsourcing: events as compact JSON, decoded with type checks.

Stock eventsourcing encodes with the stdlib json module and type tags; this mapper
encodes the same frozen dataclass events with msgspec (UUIDs and datetimes natively),
and on decode runs the class_version upcasters before msgspec converts (and validates)
the state into the event class. Snapshots keep the stock path: their state is an
untyped dict that msgspec could not restore. Pure: bytes in, objects out.
"""

from __future__ import annotations

from typing import Any

import msgspec
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class MsgspecMapper(Mapper):
    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if isinstance(domain_event, Snapshot):
            return super().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        data = _encoder.encode(state)
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=get_topic(type(domain_event)),
            state=data,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        cls = resolve_topic(stored_event.topic)
        if issubclass(cls, Snapshot):
            return super().to_domain_event(stored_event)
        data = stored_event.state
        try:
            if self.cipher:
                data = self.cipher.decrypt(data)
            if self.compressor:
                data = self.compressor.decompress(data)
            state: dict[str, Any] = _decoder.decode(data)
        except Exception as e:
            raise MapperDeserialisationError(
                f"cannot decode {stored_event.topic} {stored_event.originator_id} "
                f"v{stored_event.originator_version}: {e}"
            ) from e
        from_version = state.pop("class_version", 1)
        while from_version < getattr(cls, "class_version", 1):
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        return msgspec.convert(state, type=cls)

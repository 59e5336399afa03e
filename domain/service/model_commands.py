"""The models registry (domain.model.trained_model): register a model, look one up."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.model.actor import Actor
from domain.model.errors import ModelNotFoundError
from domain.model.trained_model import TrainedModel, model_id_for
from domain.service.base import ServiceBase
from domain.service.unit_of_work import Outcome, UnitOfWork


class ModelCommands(ServiceBase):
    def register_model(
        self,
        *,
        name: str,
        path: str,
        kind: str,
        base_model: str | None = None,
        dataset_position: int | None = None,
        dataset_digest: str | None = None,
        metrics: dict[str, Any] | None = None,
        actor: Actor | None = None,
    ) -> Outcome:
        """Record a model in the registry; the same facts again record nothing."""
        fields: dict[str, Any] = dict(
            name=name,
            path=path,
            kind=kind,
            base_model=base_model,
            dataset_position=dataset_position,
            dataset_digest=dataset_digest,
            metrics=metrics,
        )
        model_id = model_id_for(name)

        def command(uow: UnitOfWork) -> UUID:
            existing = uow.find(TrainedModel, model_id)
            if existing is None:
                uow.add(TrainedModel.register(actor=actor or Actor(), **fields))
            else:
                existing.check_same(**fields)
            return model_id

        return Outcome.of(*self.run((model_id,), command))

    def get_model(self, name: str) -> TrainedModel:
        """The registry entry of a name (ModelNotFoundError when there is none)."""
        try:
            return self._read(TrainedModel, model_id_for(name))
        except ModelNotFoundError:
            raise ModelNotFoundError(f"model {name!r} is not registered") from None

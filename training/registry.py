"""The models registry from the training side: register a run's output, resolve a name.

``register`` turns what a training run leaves behind (its folder, the dataset's
manifest.json, its metrics.json) into one ``TrainedModel`` registration; ``resolve`` turns
``--model NAME_OR_PATH`` into the weights to load and the name replies are recorded under.
Both go through the DataEngine service, so the registry needs no read model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain.model.actor import Actor
from domain.model.errors import InvalidModelError, ModelNotFoundError
from domain.model.trained_model import KINDS, TrainedModel, check_name
from domain.service.application import DataEngine, Outcome

# metrics.json keys worth a registry entry, in this order (the `train` runs' names);
# other numbers follow. Curves (lists) and the run's settings are not headline numbers.
HEADLINE_FIRST = (
    "pairwise_accuracy",
    "final_reward",
    "final_kl",
    "final_reward_accuracy",
    "initial_reward",
    "eval_loss",
    "final_loss",
    "train_loss",
    "global_step",
    "train_samples",
    "validation_samples",
)
NOT_METRICS = ("trainer_config", "options", "own_options", "versions", "device", "dataset")


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """What to load (``path``) and whose replies they are (``model_name``)."""

    model_name: str
    path: str
    registered: TrainedModel | None


def resolve(app: DataEngine, name_or_path: str) -> ResolvedModel:
    """A registered name resolves to its path; anything else is taken as a folder or hub id
    and names itself."""
    if not name_or_path or not name_or_path.strip():
        raise InvalidModelError("--model needs a registered name, a folder or a hub id")
    try:
        check_name(name_or_path)
        model = app.get_model(name_or_path)
    except (InvalidModelError, ModelNotFoundError):
        return ResolvedModel(name_or_path, name_or_path, None)
    return ResolvedModel(model.name, model.path, model)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidModelError(f"no {what} at {path}") from None
    except json.JSONDecodeError as e:
        raise InvalidModelError(f"{path} is not JSON: {e}") from None


def read_manifest(folder: str | Path) -> tuple[int, str | None]:
    """(log position, audit digest) of a dataset folder written by `datasets build`."""
    path = Path(folder)
    path = path if path.name == "manifest.json" else path / "manifest.json"
    manifest = _read_json(path, "dataset manifest")
    position = manifest.get("log_position") if isinstance(manifest, dict) else None
    if isinstance(position, bool) or not isinstance(position, int):
        raise InvalidModelError(f"{path} has no log_position")
    audit = manifest.get("audit") or {}
    digest = audit.get("digest") if isinstance(audit, dict) else None
    return position, digest if isinstance(digest, str) and digest else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def headline_metrics(metrics: dict[str, Any], limit: int = 12) -> dict[str, float]:
    """The scalar numbers of a metrics.json, at most ``limit``: known headline keys first,
    then other top-level numbers, then numbers one level down as ``outer.inner``. A nested
    figure with details (``{"value": 0.8, "pairs": 40}``) counts as its value."""
    flat: dict[str, float] = {}
    nested: dict[str, float] = {}
    for key, value in metrics.items():
        if _number(value):
            flat[key] = float(value)
        elif isinstance(value, dict) and key not in NOT_METRICS:
            if _number(value.get("value")):
                flat[key] = float(value["value"])
                continue
            for inner, number in value.items():
                if _number(number):
                    nested[f"{key}.{inner}"] = float(number)
    for key, number in nested.items():
        flat.setdefault(key, number)
    ordered = [k for k in HEADLINE_FIRST if k in flat]
    ordered += [k for k in flat if k not in HEADLINE_FIRST]
    return {k: flat[k] for k in ordered[:limit]}


def read_metrics(path: str | Path) -> dict[str, float]:
    path = Path(path)
    data = _read_json(path, "metrics file")
    if not isinstance(data, dict):
        raise InvalidModelError(f"{path} must hold a JSON object of metrics")
    return headline_metrics(data)


def local_or_hub(path: str, kind: str) -> str:
    """An existing folder as an absolute path; a missing one only for base/external models
    (a hub id such as ``org/model``), since trained weights must be on disk."""
    if kind not in KINDS:
        raise InvalidModelError(f"model kind must be one of {', '.join(KINDS)}, not {kind!r}")
    candidate = Path(path).expanduser()
    if candidate.exists():
        return str(candidate.resolve())
    if kind in ("base", "external"):
        return path
    raise InvalidModelError(
        f"no model folder at {path} (only base/external models may name a hub id)"
    )


def register(
    app: DataEngine,
    *,
    name: str,
    path: str | Path,
    kind: str,
    base_model: str | None = None,
    dataset: str | Path | None = None,
    metrics: str | Path | dict[str, Any] | None = None,
    actor: Actor | None = None,
) -> Outcome:
    """Register a model from its folder, the dataset folder it was trained on and its
    metrics (a metrics.json path or a dict); ``Outcome.recorded`` is False when the same
    registration was already there."""
    position, digest = read_manifest(dataset) if dataset is not None else (None, None)
    numbers = (
        read_metrics(metrics)
        if isinstance(metrics, (str, Path))
        else headline_metrics(metrics)
        if metrics
        else {}
    )
    resolved = local_or_hub(str(path), kind)
    outcome = app.register_model(
        name=name,
        path=resolved,
        kind=kind,
        base_model=base_model,
        dataset_position=position,
        dataset_digest=digest,
        metrics=numbers,
        actor=actor,
    )
    mark_registered(resolved, name)
    return outcome


REGISTERED = "registered.json"  # training.runs refuses to train into such a folder


def mark_registered(path: str, name: str) -> None:
    """A registered model's folder says so, so `train --out` there is refused instead of
    silently replacing the weights the registry points at."""
    folder = Path(path)
    if folder.is_dir():
        marker = folder / REGISTERED
        names = set()
        if marker.is_file():
            try:
                names = set(json.loads(marker.read_text()).get("names", []))
            except (ValueError, AttributeError):
                names = set()
        names.add(name)
        marker.write_text(json.dumps({"name": name, "names": sorted(names)}, indent=2) + "\n")

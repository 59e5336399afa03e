"""``GET /api/v1/hf/text_toxicity``: a toxicity classifier run locally through transformers.

OA posts the text to Hugging Face's hosted Detoxify model and answers its output, a list
of lists of ``{label, score}``. Here the model is a local folder named by
$DATAENGINE_TOXICITY_MODEL (no hub access), loaded on first use in the threadpool. With
none configured, or one that fails to load or run, the answer is OA's own error for a
failed call: 400 with error_code 3001 (HUGGINGFACE_API_ERROR), never a 500.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from api.http.errors import HttpError, log, validation
from api.http.routing import Api, Call
from domain.model.errors import ErrorCode

MODEL_ENV = "DATAENGINE_TOXICITY_MODEL"
OA_MESSAGE = "Response Error Detoxify HuggingFace"  # OA's text for a failed call


def _failed(detail: str) -> HttpError:
    return HttpError(f"{OA_MESSAGE}: {detail}", ErrorCode.HUGGINGFACE_API_ERROR, 400)


class Classifier:
    """The configured pipeline, loaded once (per server) when first asked."""

    def __init__(self, path: str | None = None):
        self.path = path if path is not None else os.environ.get(MODEL_ENV) or None
        self._pipeline: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._pipeline is None:
                from transformers import pipeline

                self._pipeline = pipeline("text-classification", model=self.path, top_k=None)
            return self._pipeline

    def classify(self, text: str) -> list[list[dict[str, Any]]]:
        if not self.path:
            raise _failed(f"no toxicity classifier is configured (set {MODEL_ENV})")
        try:
            scores = self._load()([text])
        except ImportError:
            raise _failed("transformers is not installed (the training extra)") from None
        except Exception as e:  # noqa: BLE001 - OA answers any failed call with its error
            log.error("toxicity classifier failed", exc_info=e)
            raise _failed(f"the classifier failed: {type(e).__name__}") from None
        return [[{"label": s["label"], "score": float(s["score"])} for s in row] for row in scores]


def register(api: Api, classifier: Classifier | None = None) -> None:
    model = classifier or Classifier()

    def text_toxicity(call: Call) -> Any:
        text = call.query("msg")
        if text is None:
            raise validation("query parameter msg is required")
        return model.classify(text)

    api.add(
        "GET",
        "/api/v1/hf/text_toxicity",
        text_toxicity,
        access="trusted",
        response=list[list[dict[str, Any]]],
        query={"msg": "the text to classify (required)"},
        errors={"400": "no classifier configured, or it failed (error_code 3001)"},
        summary=f"toxicity scores from the local classifier in ${MODEL_ENV}",
        tag="hf",
    )

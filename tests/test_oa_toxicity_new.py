"""GET /api/v1/hf/text_toxicity with a configured local classifier (a tiny model built on
the spot: no hub), and OA's error, never a 500, when the configured one cannot load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.http.app import create_app
from tests.http_helpers import ROOT, SMALL, WEB_KEY, Env, error, in_process

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.anyio
LABELS = {0: "non-toxic", 1: "toxic"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tiny_classifier(folder: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from training.tiny import DEFAULT_TEXTS, build_tokenizer

    tokenizer = build_tokenizer(DEFAULT_TEXTS, vocab_size=300)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


async def _ask(tmp_path: Path, monkeypatch: Any, model: Path) -> Any:
    monkeypatch.setenv("DATAENGINE_TOXICITY_MODEL", str(model))
    app = create_app(tmp_path / "data", SMALL, root_tokens=frozenset({ROOT}), web_api_key=WEB_KEY)
    async with in_process(app) as client:
        env = Env(client, WEB_KEY)
        return await env.get("/api/v1/hf/text_toxicity", msg="you are a kind person")


async def test_a_configured_classifier_answers_hf_shape(tmp_path: Path, monkeypatch: Any):
    r = await _ask(tmp_path, monkeypatch, tiny_classifier(tmp_path / "model"))
    assert r.status_code == 200, r.text
    (scores,) = r.json()
    assert sorted(s["label"] for s in scores) == ["non-toxic", "toxic"]
    assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-4)


async def test_a_classifier_that_cannot_load_is_oas_error(tmp_path: Path, monkeypatch: Any):
    (tmp_path / "broken").mkdir()
    r = await _ask(tmp_path, monkeypatch, tmp_path / "broken")
    assert error(r, 400, 3001).startswith("Response Error Detoxify HuggingFace")

"""Pre-labelling prompts that carry images, with an image-text-to-text model.

training.prelabel plans, samples and submits; this module gives it the two things that
differ for images. ``job_chat`` builds the conversation a target's candidates answer:
for a vision-language model each message's content is a list of parts, one
``{"type": "image", "sha256": ...}`` per image it carries and then its text (the layout
of TRL's vision datasets; chat templates ignore the extra ``sha256`` key); a text-only
model gets plain text, and ``None`` for a conversation with images, which it cannot see
(the run counts those as skipped ``image_prompt_text_model``). ``VisionGenerator`` samples
with ``AutoProcessor`` + ``AutoModelForImageTextToText``, reading the pictures from the
blob store by the hashes in the chat.
"""

from __future__ import annotations

import io
from typing import Any
from uuid import UUID

from api.storage.blobs import BlobStore
from domain.model.tree import ConversationTree
from domain.model.tree_rules import path_to_root
from training.generated_text import clean_text

CHAT_ROLES = {"prompter": "user", "assistant": "assistant"}
TEXT_MODEL_SKIP = "image_prompt_text_model"


def job_chat(tree: ConversationTree, parent_id: UUID, vision: bool) -> list[dict] | None:
    path = list(reversed(path_to_root(tree, tree.messages[parent_id])))
    if not vision:
        if any(m.images for m in path):
            return None
        return [{"role": CHAT_ROLES[m.role.value], "content": m.text} for m in path]
    return [
        {
            "role": CHAT_ROLES[m.role.value],
            "content": [{"type": "image", "sha256": i.sha256} for i in m.images]
            + [{"type": "text", "text": m.text}],
        }
        for m in path
    ]


def chat_images(chat: list[dict]) -> list[str]:
    """The sha256 of every image part, in the order the template places them."""
    return [
        part["sha256"]
        for message in chat
        if not isinstance(message["content"], str)
        for part in message["content"]
        if part.get("type") == "image"
    ]


class VisionGenerator:
    """An image-text-to-text model and its processor, sampling several replies per chat.

    Left padding, as for decoder-only text models; only the new tokens are decoded.
    """

    def __init__(self, path: str, blobs: BlobStore | None, device: str | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if blobs is None:
            raise ValueError("a vision-language model needs the blob store to read images")
        self.blobs = blobs
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cuda = self.device.startswith("cuda")
        dtype = torch.bfloat16 if cuda else torch.float32
        self.processor = AutoProcessor.from_pretrained(path)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # transformers types from_pretrained().to() too narrowly for a str device
        model: Any = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
        self.model = model.to(self.device)
        self.model.eval()

    def image(self, sha256: str) -> Any:
        from PIL import Image

        return Image.open(io.BytesIO(self.blobs.read(sha256))).convert("RGB")

    def sample(self, chats: list[list[dict]], n: int, options: Any) -> tuple[list[list[str]], int]:
        """``n`` texts per chat (stripped, may be empty) and the number of new tokens."""
        import torch

        texts = [
            self.processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
            for c in chats
        ]
        images = [self.image(h) for c in chats for h in chat_images(c)]
        batch = self.processor(
            text=texts, images=images or None, return_tensors="pt", padding=True
        ).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                do_sample=True,
                temperature=options.temperature,
                top_p=options.top_p,
                max_new_tokens=options.max_new_tokens,
                num_return_sequences=n,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        tokens = int((new != self.tokenizer.pad_token_id).sum())
        decoded = [
            clean_text(t) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)
        ]
        return [decoded[i * n : (i + 1) * n] for i in range(len(chats))], tokens

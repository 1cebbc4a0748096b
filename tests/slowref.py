"""The slow, obvious computations the attention methods are tested against: a fresh copy of the
model with eager attention, one full backward per prompt, loops over layers, heads and tokens."""

from __future__ import annotations

import torch
from transformers import CLIPModel


def apply_target(logits: torch.Tensor, target: str) -> torch.Tensor:
    if target == "log_softmax":
        return torch.log_softmax(logits, dim=0)
    if target == "contrast":
        return logits - logits.mean()
    return logits


class EagerCLIP:
    """A CLIPModel with eager attention, every weight trainable (as a person would write it)."""

    def __init__(self, model_dir, explainer, prompts):
        self.model = CLIPModel.from_pretrained(model_dir, attn_implementation="eager").eval()
        self.processor = explainer.adapter.image_processor
        self.tokens = explainer.adapter.tokenizer(list(prompts), padding=True, return_tensors="pt")
        cfg = self.model.config.vision_config
        self.side = cfg.image_size // cfg.patch_size
        self.heads = cfg.num_attention_heads
        self.layers = list(self.model.vision_model.encoder.layers)

    def pixels(self, image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"].requires_grad_(True)

    def text(self) -> torch.Tensor:
        emb = self.model.get_text_features(**self.tokens).pooler_output
        return emb / emb.norm(dim=-1, keepdim=True)

"""What is explained per prompt: the logit, its log-softmax over the prompts, or its contrast."""

from __future__ import annotations

import torch

from .constants import TARGETS, check_choice


def check_target(target: str) -> str:
    """Return ``target`` if it is one of TARGETS, else raise ValueError listing them."""
    return check_choice(target, TARGETS, "target")


def target_scores(logits: torch.Tensor, target: str) -> torch.Tensor:
    """The K quantities that are explained, from the K logits (..., K) (the last axis: prompts)."""
    if target == "log_softmax":
        return torch.log_softmax(logits, dim=-1)
    if target == "contrast":
        return logits - logits.mean(dim=-1, keepdim=True)
    return logits

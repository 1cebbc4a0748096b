"""The record of a result: its scores and the settings that made it, as one JSON-ready dict.

One builder for every place that writes it: the CLI's scores.json, the app's scores.json download
and the app's JSON output. A method that reads no sublayer (the attention methods) records None.
"""

from __future__ import annotations

from .methods import get_method
from .results import Explanation


def scores_record(result: Explanation, model: str | None = None, **extra: object) -> dict:
    """Prompts, logits and probabilities (``prob_kind``: "softmax" over the prompts, or "sigmoid"
    per prompt), then model, family, layer (or the layers of a sweep), sublayer, target, method, the dead
    layers with their reasons, notes and the explanation's seconds; ``extra`` keys are added last."""
    reads_sublayer = get_method(result.method).sublayer_applies
    where = {"layer": result.layers[0]} if len(result.layers) == 1 else {"layers": list(result.layers)}
    dead = {str(layer): reason for layer, reason in zip(result.layers, result.dead_reasons) if reason}
    return {
        "prompts": list(result.prompts),
        "logits": [float(x) for x in result.logits],
        "probs": [float(x) for x in result.probs],
        "prob_kind": result.prob_kind,
        "model": model or result.model,
        "family": result.family,
        **where,
        "sublayer": result.sublayer if reads_sublayer else None,
        "target": result.target,
        "method": result.method,
        "dead": dead,
        "notes": list(result.notes),
        "seconds": round(result.seconds, 3),
        **extra,
    }

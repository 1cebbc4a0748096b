"""Layer numbers for people: 1..N, checked once for every family."""

from __future__ import annotations

import numbers


def check_layer(layer: object, n_layers: int, noun: str = "layer") -> int:
    """Return ``layer`` if it is a valid 1-based layer number, else raise ValueError naming the range."""
    if isinstance(layer, float) and layer.is_integer():
        layer = int(layer)  # sliders and JSON send whole numbers as floats
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        shown = repr(layer) if len(repr(layer)) <= 40 else repr(layer)[:39] + "…"  # never echo a huge value
        raise ValueError(f"{noun.capitalize()} must be a whole number from 1 to {n_layers}; got {shown}.")
    layer = int(layer)
    if not 1 <= layer <= n_layers:
        if noun == "layer":
            raise ValueError(f"Layer {layer} is out of range: this model's vision encoder has layers 1 to {n_layers}.")
        raise ValueError(f"{noun.capitalize()} {layer} is out of range: this model has {noun}s 1 to {n_layers}.")
    return layer

"""Chefer et al.'s text relevance (Chefer, Gur & Wolf, "Generic Attention-model Explainability
for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021), as the authors' CLIP
notebook (Transformer-MM-Explainability, CLIP_explainability.ipynb, ``interpret``) computes it.

For each text-encoder layer l from the start layer to the last, Ā_l = mean over heads of
ReLU(∂S/∂A_h ⊙ A_h), with A_h head h's (masked) attention probabilities and S prompt k's score;
R starts as the identity and grows as R ← R + Ā_l R. A token's relevance is the row of R at the
position the text embedding is read from (the end-of-text token for CLIP), in its column. The
notebook's default start layer is the last one (``start_layer_text = -1``); it shows
R[eot, 1:eot] divided by its sum, clipcam keeps the raw values. Non-negative (unsigned).
"""

from __future__ import annotations

import torch

from ..methods.attention import attention_grads, attention_probs
from ..methods.chefer import weighted_attention
from . import TextLayer, WordMethod


def chefer_tokens(layers: list[TextLayer], mask: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """Relevance of every position for K prompts → (K, T): row ``pooled[k]`` of
    R = (I + Ā_last)···(I + Ā_start), built per prompt with its own mask (K, T, T)."""
    rows = []
    for k in range(mask.shape[0]):
        t = mask.shape[-1]
        r = torch.eye(t, dtype=torch.float32, device=mask.device)  # (T, T)
        for a in layers:
            probs = attention_probs(a.q[k], a.k[k], a.heads, mask[k])  # (H, T, T)
            grads = attention_grads(a.grad_out[k:k + 1], a.out_weight, a.v[k], a.heads)  # (1, H, T, T)
            r = r + weighted_attention(probs, grads)[0] @ r
        rows.append(r[pooled[k]])
    return torch.stack(rows)  # (K, T)


METHOD = WordMethod(
    name="chefer",
    label="Chefer relevance (text attention)",
    paper="Chefer, Gur & Wolf, ICCV 2021",
    about="gradient-weighted attention of the text encoder, multiplied through the layers; the row of the "
          "token the text embedding is read from",
    reads="attention",
    compute=chefer_tokens,
    signed=False,
    default_layer=lambda layers: layers,  # the notebook's start_layer_text = -1: the last layer
)

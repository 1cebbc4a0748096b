"""One forward, no backward: the pieces of each family's image embedding that the decomposition
splits (clipcam.decompose.terms turns them into terms).

- **Class-token ViTs** (Hugging Face CLIP, open_clip ViTs read from their class token): the class
  token after the last block is the embedding (x₀ of block 1) plus, for each block, its attention's
  class-token row (one term per head and source token) and its MLP on the class token. Each block's
  input is caught by a hook on the block (its BlockView); q, k and v are read from Hugging Face
  CLIP's projections, or computed again from the input for open_clip (whose fused projection has no
  module to hook); the class token's attention row is computed again (the model keeps no
  probabilities), and the MLP term is the block's MLP on the class token alone. The final LayerNorm is frozen at the real pooled
  token's mean and standard deviation, so that it and the projection are one affine map.
- **SigLIP and SigLIP 2** (as compute_siglip.py of Gandelsman et al.): only the attention-pooling
  head is split, per head and per token of its input; its MLP residual (nonlinear in the heads) is
  the one ``mlps`` term, and its output projection's bias is the ``embed`` term.
- **open_clip ResNets**: the attention pool is split per head and per position (its first token is
  the mean of the grid, reported as the class token's share); the output projection's bias is the
  ``embed`` term; the stages before it act only through the pool's values, so they have no term
  of their own, and there is no MLP (``mlps`` is zero).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..hooks import forward_hooks
from ..models.base import ModelAdapter

#: Families whose embedding is read from the class token after a final LayerNorm and projection.
CLASS_TOKEN_FAMILIES = ("hf-clip", "open_clip-vit")
#: Families whose embedding is an attention-pooling head's output.
POOLING_HEAD_FAMILIES = ("siglip", "siglip2-naflex")
RESNET_FAMILIES = ("open_clip-resnet",)


@dataclass
class Readout:
    """The final read-out as one affine map per image, with its statistics frozen: a residual-stream
    vector x (D,) of image b becomes ``(x * gain[b]) @ proj`` (E,), and the constant ``constant[b]``
    (E,) (the LayerNorm's bias and its mean's share) is shared among the terms: ``share`` of it to
    the embedding term, to each MLP term and to each attention layer (Gandelsman et al.'s even split
    over the 2L + 1 intermediates). proj None: the identity (no projection)."""

    gain: torch.Tensor  # (B, D)
    proj: torch.Tensor | None  # (D, E)
    constant: torch.Tensor  # (B, E)
    share: float

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The linear part on (B, ..., D) → (B, ..., E)."""
        gain = self.gain.reshape(self.gain.shape[0], *([1] * (x.dim() - 2)), -1)
        y = x * gain
        return y if self.proj is None else y @ self.proj

    def pull(self, text: torch.Tensor) -> torch.Tensor:
        """Directions (K, E) pulled back into the residual stream: (B, K, D), so that
        ``pull(t)[b, k] · x == apply(x)[b] · t[k]``."""
        back = text if self.proj is None else text @ self.proj.T  # (K, D)
        return self.gain[:, None, :] * back[None]


@dataclass
class Layer:
    """One attention layer, seen from the pooled query: ``probs`` (B, H, T) its attention over the
    source tokens, ``values`` (B, T, D) their values (heads concatenated), ``out_weight`` (D', D) the
    output projection, ``scale`` the layer scale after it (elementwise, or identity), ``bias`` (D',)
    the output projection's bias where it is split evenly over the H·T head-token terms (None: it is
    in the embedding term instead)."""

    probs: torch.Tensor
    values: torch.Tensor
    out_weight: torch.Tensor
    scale: Callable[[torch.Tensor], torch.Tensor]
    bias: torch.Tensor | None

    @property
    def heads(self) -> int:
        return self.probs.shape[1]

    def head_outputs(self) -> torch.Tensor:
        """Each head's direct output for the pooled token, before the bias: (B, H, D')."""
        b, t, d = self.values.shape
        split = self.values.reshape(b, t, self.heads, d // self.heads)  # (B, T, H, dh)
        mixed = torch.einsum("bht,bthd->bhd", self.probs, split)  # (B, H, dh)
        weight = self.out_weight.reshape(-1, self.heads, d // self.heads)  # (D', H, dh)
        return self.scale(torch.einsum("bhd,ehd->bhe", mixed, weight))


@dataclass
class Pieces:
    """What one forward of a family gives the decomposition, all before the read-out (residual
    width D): ``embed`` (B, D), ``layers`` (all of the split layers, in order), ``mlps`` (B, L, D),
    ``readout``, ``features`` (B, E) the model's own embedding, ``prefix`` tokens before the grid,
    ``valid`` (B, T) the real tokens (None: all)."""

    embed: torch.Tensor
    layers: list[Layer]
    mlps: torch.Tensor
    readout: Readout
    features: torch.Tensor
    prefix: int
    valid: torch.Tensor | None = None


#: Which parts each family's decomposition gives, for people (the app, --help).
PARTS: dict[str, str] = {
    "hf-clip": "every block's heads (per source token) and MLPs, and the embeddings",
    "open_clip-vit": "every block's heads (per source token) and MLPs, and the embeddings",
    "siglip": "the attention-pooling head's heads (per token), its MLP, and its output bias with the logit bias",
    "siglip2-naflex": "the attention-pooling head's heads (per token), its MLP, and its output bias with the logit bias",
    "open_clip-resnet": "the attention pool's heads (per position and its mean token) and its output bias; no MLP",
}


def decompose_parts(adapter: ModelAdapter) -> str | None:
    """What the decomposition gives for this model, in words, or None when it is refused."""
    return None if decompose_reason(adapter) else PARTS[adapter.family]


def decompose_reason(adapter: ModelAdapter) -> str | None:
    """Why this model's embedding cannot be decomposed, in one sentence, or None when it can."""
    family = adapter.family
    if family == "open_clip-vit" and getattr(adapter, "pool_type", "tok") != "tok":
        return ("The decomposition needs an open_clip ViT read from its class token; this one pools its tokens "
                f"with '{adapter.pool_type}'.")
    if family in CLASS_TOKEN_FAMILIES + POOLING_HEAD_FAMILIES + RESNET_FAMILIES:
        return None
    return (f"{adapter.family_label} models cannot be decomposed by layer and head: clipcam splits CLIP and "
            "open_clip ViTs, SigLIP, SigLIP 2 and open_clip ResNets.")


def capture(adapter: ModelAdapter, pixels: Any) -> Pieces:
    """The pieces of one forward (no gradient) of ``pixels`` (the adapter's input, batch B)."""
    reason = decompose_reason(adapter)
    if reason:
        raise ValueError(reason)
    with torch.no_grad():
        if adapter.family in CLASS_TOKEN_FAMILIES:
            return _class_token(adapter, pixels)
        if adapter.family in POOLING_HEAD_FAMILIES:
            return _pooling_head(adapter, pixels)
        return _resnet_pool(adapter, pixels)


def _final_norm(adapter: ModelAdapter) -> tuple[torch.nn.LayerNorm, torch.Tensor | None]:
    """The class-token families' final LayerNorm and projection (D, E)."""
    if adapter.family == "hf-clip":
        return adapter.model.vision_model.post_layernorm, adapter.model.visual_projection.weight.T
    visual = adapter.model.visual
    return visual.ln_post, visual.proj


def _class_token(adapter: ModelAdapter, pixels: torch.Tensor) -> Pieces:
    """CLIP-style ViTs: block inputs caught by hooks; each block's class-token row computed again."""
    views = adapter.block_views(1)
    layers: list[Layer] = []
    mlps: list[torch.Tensor] = []
    inputs: list[torch.Tensor] = []
    last: list[torch.Tensor] = []

    taps: dict[int, dict[str, torch.Tensor]] = {}

    def on_block(view, index: int):
        def hook(module, args, output):
            x = args[0].float()  # (B, T, D)
            if not inputs:
                inputs.append(x[:, 0])
            tapped = taps.pop(index, None)
            if tapped:  # q, k and v as the model computed them (Hugging Face CLIP's projections)
                q, k, v = (tapped[name].float() for name in "qkv")
            else:  # open_clip's fused projection cannot be hooked: computed again from the block's input
                q, k, v = (z.float() for z in view.qkv(view.ln_1(args[0])))
            b, t, d = k.shape
            dh = d // view.heads
            scores = torch.einsum("bhd,bthd->bht", q[:, 0].reshape(b, view.heads, dh), k.reshape(b, t, view.heads, dh))
            probs = torch.softmax(scores * dh ** -0.5, dim=-1)  # (B, H, T)
            out = view.out_proj
            layer = Layer(probs, v, out.weight.float(), view.ls_1, out.bias.float() if out.bias is not None else None)
            attn = layer.head_outputs().sum(1) + (0 if layer.bias is None else view.ls_1(layer.bias))  # (B, D)
            y = x[:, :1] + attn[:, None]  # (B, 1, D): the class token after the attention
            mlps.append(view.ls_2(view.mlp(view.ln_2(y.to(args[0].dtype))))[:, 0].float())
            layers.append(layer)
            last[:] = [(output[0] if isinstance(output, tuple) else output)[:, 0].float()]
        return hook

    with ExitStack() as stack:
        for index, view in enumerate(views):
            stack.enter_context(_hooked(view.module, on_block(view, index)))
            for name, module in _projections(adapter, view).items():
                stack.enter_context(_hooked(module, _tap(taps.setdefault(index, {}), name)))
        features = adapter.image_features(pixels).float()  # (B, E)
    norm, proj = _final_norm(adapter)
    pooled = last[0]  # (B, D)
    mean = pooled.mean(-1, keepdim=True)
    std = (pooled.var(-1, unbiased=False, keepdim=True) + norm.eps).sqrt()  # (B, 1)
    weight, bias = norm.weight.float(), norm.bias.float()
    proj = None if proj is None else proj.float()
    gain = weight[None] / std  # (B, D)
    constant = bias[None] - mean * gain
    constant = constant if proj is None else constant @ proj  # (B, E)
    readout = Readout(gain, proj, constant, 1.0 / (2 * len(layers) + 1))
    return Pieces(inputs[0], layers, torch.stack(mlps, 1), readout, features, adapter.prefix)


def _projections(adapter: ModelAdapter, view) -> dict[str, torch.nn.Module]:
    """The modules whose outputs are a block's q, k and v, where the family has them as modules
    (Hugging Face CLIP): reading them saves computing 3·T·D² again per block."""
    if adapter.family != "hf-clip":
        return {}
    attn = view.module.self_attn
    return {"q": attn.q_proj, "k": attn.k_proj, "v": attn.v_proj}


def _tap(store: dict[str, torch.Tensor], name: str) -> Callable:
    """A forward hook that keeps its module's output in ``store[name]``."""
    def hook(module, args, output) -> None:
        store[name] = output
    return hook


def _hooked(module: torch.nn.Module, hook: Callable) -> Any:
    """A context manager that holds one forward hook on ``module`` (this thread only)."""
    return forward_hooks([(module, hook)])


def _input_of(module: torch.nn.Module, pixels: Any, adapter: ModelAdapter) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's embedding (B, E) and ``module``'s first input, from one forward."""
    seen: list[torch.Tensor] = []

    def hook(m, args, out) -> None:
        seen.append(args[0])

    with _hooked(module, hook):
        features = adapter.image_features(pixels).float()  # (B, E)
    return features, seen[0]


def _identity_readout(features: torch.Tensor) -> Readout:
    """No final norm or projection after the split: the terms are already in embedding space."""
    b, e = features.shape
    return Readout(torch.ones(b, e, dtype=features.dtype), None, torch.zeros(b, e, dtype=features.dtype), 1.0)


def _pooling_head(adapter: ModelAdapter, pixels: Any) -> Pieces:
    """SigLIP's pooling head: its input tokens caught by a hook, its attention computed again."""
    head = adapter.model.vision_model.head
    features, tokens = _input_of(head, pixels, adapter)
    tokens = tokens.float()  # (B, T, D)
    attn = head.attention  # torch.nn.MultiheadAttention
    b, t, d = tokens.shape
    heads = attn.num_heads
    dh = d // heads
    wq, wk, wv = attn.in_proj_weight.float().chunk(3)
    bq, bk, bv = attn.in_proj_bias.float().chunk(3)
    probe = head.probe.float().expand(b, 1, d)
    q = F.linear(probe, wq, bq)[:, 0].reshape(b, heads, dh)
    k = F.linear(tokens, wk, bk).reshape(b, t, heads, dh)
    v = F.linear(tokens, wv, bv)  # (B, T, D)
    scores = torch.einsum("bhd,bthd->bht", q, k) * dh ** -0.5
    valid = None
    mask = getattr(pixels, "pixel_attention_mask", None)
    if mask is not None:
        valid = mask.to(tokens.device).bool().expand(b, -1)  # (B, T)
        scores = scores.masked_fill(~valid[:, None], float("-inf"))
    layer = Layer(torch.softmax(scores, dim=-1), v, attn.out_proj.weight.float(), lambda z: z, None)
    bias = attn.out_proj.bias.float()
    pooled = layer.head_outputs().sum(1) + bias  # (B, D)
    mlp = head.mlp(head.layernorm(pooled[:, None]))[:, 0].float()  # (B, D)
    embed = bias[None].expand(b, -1)
    return Pieces(embed, [layer], mlp[:, None], _identity_readout(features), features, 0, valid)


def _resnet_pool(adapter: ModelAdapter, pixels: torch.Tensor) -> Pieces:
    """open_clip's ModifiedResNet: the attention pool's input caught by a hook and split again."""
    pool = adapter.model.visual.attnpool
    features, grid = _input_of(pool, pixels, adapter)
    x = grid.float().flatten(2).transpose(1, 2)  # (B, HW, C)
    x = torch.cat([x.mean(1, keepdim=True), x], 1) + pool.positional_embedding.float()[None]  # (B, 1+HW, C)
    b, t, c = x.shape
    heads = pool.num_heads
    dh = c // heads
    q = pool.q_proj(x[:, 0]).float().reshape(b, heads, dh)
    k = pool.k_proj(x).float().reshape(b, t, heads, dh)
    v = pool.v_proj(x).float()  # (B, T, C)
    probs = torch.softmax(torch.einsum("bhd,bthd->bht", q, k) * dh ** -0.5, dim=-1)
    layer = Layer(probs, v, pool.c_proj.weight.float(), lambda z: z, None)
    embed = pool.c_proj.bias.float()[None].expand(b, -1)
    mlps = torch.zeros(b, 1, features.shape[1])
    return Pieces(embed, [layer], mlps, _identity_readout(features), features, 1)

"""open_clip models as model adapters: its VisionTransformer, its ModifiedResNet and timm trunks.

Named the way open_clip names them: ``hf-hub:org/repo`` (``open_clip_config.json`` and weights on
the hub) or ``local-dir:/path`` (the same two files in a folder). The model is built from its
config with open_clip's own factory, and its weights are read from a ``.safetensors`` file only.

- **VisionTransformer** (OpenAI, LAION, DataComp, MetaCLIP ViTs): blocks ``ln_1``, ``attn`` (an
  ``nn.MultiheadAttention`` with one fused ``in_proj_weight``), ``ln_2``, ``mlp.c_fc``,
  ``mlp.gelu``, ``mlp.c_proj``; a class token first; the embedding is ``ln_post`` of the class
  token (``pool_type='tok'``) or of the patch mean (``'avg'``), times ``proj``. The fused
  attention never calls a q/k/v module, so q, k and v are recomputed exactly from ``ln_1``'s
  output and ``in_proj_weight``.
- **ModifiedResNet** (RN50, RN101, RN50x4, …): the layers are its four stages ``layer1`` …
  ``layer4``, each explained on its output (N, C, H, W), read as H×W tokens without prefix; the
  attention pool (``attnpool``) reads every position of ``layer4``. Grad-CAM's default is
  ``layer4``, as in the classic CLIP Grad-CAM demos.
- **timm trunks** (ViT-B-16-SigLIP, ConvNeXt): a timm ViT's ``blocks`` (prefix tokens and grid
  from timm) or a ConvNeXt's ``stages`` (like a ResNet's), for the Grad-CAM family and Score-CAM.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from ..constants import SHAPES_RN_DIR
from ..geometry import CropGeometry
from .base import AttentionSite, BlockView, ModelAdapter, ShortName, Start, TextInputs, ValuePool, special_free
from .pool import PoolView, attention_pool_view


class OpenClipAdapter(ModelAdapter):
    """What every open_clip model shares: its preprocessing, tokenizer, text tower and score."""

    library = "open_clip"

    def __init__(self, name, source, model, device, dtype, tokenizer, preprocess) -> None:
        super().__init__(name, source, model, device, dtype)
        self.tokenizer = tokenizer
        self.transform = preprocess
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = cfg.get("size", getattr(model.visual, "image_size", 224))
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)  # (H, W)
        self.resize_mode = cfg.get("resize_mode", "shortest")
        if self.resize_mode not in ("shortest", "squash", "longest"):
            raise ValueError(f"Unsupported open_clip resize mode {self.resize_mode!r}.")
        if getattr(model, "logit_bias", None) is not None:  # SigLIP trained in open_clip
            self.prob_kind = "sigmoid"  # type: ignore[misc]

    # ------------------------------------------------------------------ inputs
    def preprocess(self, rgb: Image.Image) -> torch.Tensor:
        return self.transform(rgb)[None].to(self.device, self.dtype)  # (1, 3, H, W)

    def geometry(self, image_size: tuple[int, int], layer: int | None = None) -> CropGeometry:
        """open_clip's torchvision transforms as arithmetic: 'shortest' resizes the short side and
        centre-crops (torchvision rounds the crop offset: int(round(Δ / 2))); 'squash' resizes to
        the square; 'longest' resizes the long side and pads to the square."""
        width, height = image_size
        out_h, out_w = self.image_size
        grid = self.grid_at(layer) if layer is not None else self.grid
        if self.resize_mode == "squash":
            return CropGeometry(image_size, (out_w, out_h), (0, 0), (out_w, out_h), grid)
        if self.resize_mode == "shortest":
            if out_h != out_w:
                raise ValueError("clipcam supports open_clip's shortest-edge resize for square inputs only.")
            if width <= height:  # torchvision's Resize(int): the short side becomes S, the long one int(S·long/short)
                new_w, new_h = out_w, int(out_w * height / width)
            else:
                new_w, new_h = int(out_h * width / height), out_h
            left = int(round((new_w - out_w) / 2.0))
            top = int(round((new_h - out_h) / 2.0))
            return CropGeometry(image_size, (new_w, new_h), (left, top), (out_w, out_h), grid)
        ratio = max(height / out_h, width / out_w)  # ResizeKeepRatio(longest=1), then CenterCropOrPad
        new_h, new_w = round(height / ratio), round(width / ratio)
        left = -((out_w - new_w) // 2) if out_w > new_w else int(round((new_w - out_w) / 2.0))
        top = -((out_h - new_h) // 2) if out_h > new_h else int(round((new_h - out_h) / 2.0))
        return CropGeometry(image_size, (new_w, new_h), (left, top), (out_w, out_h), grid)

    @property
    def context_length(self) -> int:
        return int(getattr(self.tokenizer, "context_length", None) or self.model.context_length)

    def token_lengths(self, prompts: Sequence[str]) -> list[int]:
        inner = getattr(self.tokenizer, "encode", None)
        if inner is not None:  # open_clip's CLIP BPE tokenizer: the text's tokens plus start and end
            return [len(inner(p)) + 2 for p in prompts]
        return [0 for _ in prompts]  # other tokenizers truncate silently; nothing to report

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(prompts)).to(self.device)  # (K, context_length), truncated
        return self.model.encode_text(tokens)

    # ------------------------------------------------------------------ scores
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    @property
    def logit_bias(self) -> torch.Tensor | None:
        return getattr(self.model, "logit_bias", None)

    # ------------------------------------------------------------------ text side (word relevance)
    def _text_tower(self) -> tuple[torch.nn.Module, torch.nn.Module, bool, str, int | None, int | None]:
        """(blocks' Transformer, token embedding, causal, pool type, eos id, pad id for a padding mask)
        of open_clip's own text tower: inlined in CLIP, a TextTransformer in CustomTextCLIP."""
        model = self.model
        text = getattr(model, "text", None)
        if text is None:  # CLIP: the text tower's modules live on the model itself
            return (model.transformer, model.token_embedding, model.attn_mask is not None, model.text_pool_type,
                    getattr(model, "text_eos_id", None), None)
        if not hasattr(text, "transformer") or getattr(text, "cls_emb", None) is not None:
            raise ValueError(f"clipcam cannot read this model's {type(text).__name__} text tower yet; word relevance "
                             "needs open_clip's own TextTransformer without a class token.")
        pad = text.pad_id if text.use_pad_mask else None
        return text.transformer, text.token_embedding, text.attn_mask is not None, text.pool_type, text.eos_id, pad

    def text_inputs(self, prompts: Sequence[str]) -> TextInputs:
        """The text tower's masks (causal unless built bidirectional, padding when it uses one) and
        pooled position (``text_pool_type``: argmax, last, first or eos), as open_clip computes them."""
        _, _, causal, pool, eos, pad = self._text_tower()
        ids = self.tokenizer(list(prompts)).cpu()  # (K, T), exactly what encode_text reads
        k, t = ids.shape
        present = ids != pad if pad is not None else torch.ones(k, t, dtype=torch.bool)
        mask = present[:, None, :].expand(k, t, t).clone()
        if causal:
            mask &= torch.ones(t, t, dtype=torch.bool).tril()
        positions = {"first": torch.zeros(k, dtype=torch.long), "last": torch.full((k,), t - 1)}
        if pool == "argmax":
            pooled = ids.argmax(dim=-1)
        elif pool == "eos":
            pooled = (ids == eos).int().argmax(dim=-1)
        elif pool in positions:
            pooled = positions[pool]
        else:
            raise ValueError(f"clipcam cannot read word relevance from a text tower pooled by {pool!r}.")
        decoder = getattr(self.tokenizer, "decoder", None)
        if decoder is not None:  # open_clip's CLIP BPE: start token, the prompt's tokens, end token, zeros
            end = (ids == self.tokenizer.eot_token_id).int().argmax(dim=-1)  # (K,)
            at = torch.arange(t)[None]
            keep = (at >= 1) & (at < end[:, None])
            pieces = tuple(tuple(decoder[int(i)] for i in row[kk]) for row, kk in zip(ids, keep))
        else:  # open_clip's HFTokenizer wraps a Hugging Face tokenizer
            keep, pieces = special_free(self.tokenizer.tokenizer, ids, present)
        return TextInputs(ids=ids, mask=mask, pooled=pooled, keep=keep, pieces=pieces)

    @property
    def text_num_layers(self) -> int:
        return len(self._text_tower()[0].resblocks)

    def text_sites(self, start: int) -> list[AttentionSite]:
        """open_clip's fused attention: q, k, v recomputed exactly from ``ln_1``'s output."""
        transformer = self._text_tower()[0]
        if not getattr(transformer, "batch_first", True):
            raise ValueError("clipcam reads open_clip text towers that run batch-first only.")

        def site(block) -> AttentionSite:
            attn = block.attn
            weight, bias = attn.in_proj_weight, attn.in_proj_bias

            def split(outs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                return tuple(F.linear(outs[0].float(), weight.float(), bias.float()).chunk(3, dim=-1))

            return AttentionSite(reads=(block.ln_1,), split=split, out=attn, out_weight=attn.out_proj.weight,
                                 heads=attn.num_heads)

        return [site(b) for b in list(transformer.resblocks)[start - 1:]]

    def text_token_embedding(self) -> torch.nn.Module:
        return self._text_tower()[1]


class OpenClipViTAdapter(OpenClipAdapter):
    """open_clip's own VisionTransformer."""

    family = "open_clip-vit"
    family_label = "open_clip ViT"
    capabilities = frozenset({"sublayer", "attention", "class_token", "layer_readout", "dense", "value_path",
                              "parallel_path", "surgery_path"})
    sublayers = ("ln_1", "attn", "ln_2", "mlp.c_fc", "mlp.gelu", "mlp.c_proj", "block")
    default_sublayer = "mlp.c_fc"
    wide_sublayers = ("mlp.c_fc", "mlp.gelu")
    short_names = (ShortName("laion-b32", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", 12,
                             "LAION-2B ViT-B/32 (open_clip)", 768, 3072),)

    @classmethod
    def matches(cls, source: str, config: Any) -> bool:
        """open_clip's own VisionTransformer."""
        return type(config).__name__ == "VisionTransformer"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        visual = self.model.visual
        if getattr(visual, "attn_pool", None) is not None:
            raise ValueError("open_clip ViTs with an attentional pooler (CoCa) are not supported by clipcam yet.")
        self._blocks = list(visual.transformer.resblocks)
        self.pool_type = visual.pool_type
        caps = {"sublayer", "attention", "layer_readout", "dense", "value_path", "parallel_path"}
        if self.pool_type == "tok":
            caps |= {"class_token", "surgery_path"}
        self.capabilities = frozenset(caps)  # type: ignore[misc]

    @property
    def num_layers(self) -> int:
        return len(self._blocks)

    @property
    def grid(self) -> tuple[int, int]:
        rows, cols = self.model.visual.grid_size
        return int(rows), int(cols)

    @property
    def prefix(self) -> int:
        return 1

    def module(self, layer: int, sublayer: str) -> torch.nn.Module:
        return self.block_module(self._blocks, layer, sublayer)

    def blocks(self) -> Sequence[torch.nn.Module]:
        return tuple(self._blocks)

    def channels(self, sublayer: str) -> int:
        block = self._blocks[0]
        wide = self.check_sublayer(sublayer) in self.wide_sublayers
        return block.mlp.c_fc.out_features if wide else block.ln_1.normalized_shape[0]

    def dead_reason(self, layer: int, sublayer: str) -> str | None:
        """With the class-token readout, the last block's patch tokens reach the class token only
        through the keys and values of its attention, which are read from ``ln_1``; everything
        after the attention is per token. With mean pooling every token counts."""
        return None if self.pool_type != "tok" else self.class_token_dead_reason(layer, sublayer, ("ln_1",))

    def attention_sites(self, start: int) -> list[AttentionSite]:
        def site(block) -> AttentionSite:
            attn = block.attn
            weight, bias = attn.in_proj_weight, attn.in_proj_bias

            def split(outs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                return tuple(F.linear(outs[0][0].float(), weight.float(), bias.float()).chunk(3, dim=-1))

            return AttentionSite(reads=(block.ln_1,), split=split, out=attn, out_weight=attn.out_proj.weight,
                                 heads=attn.num_heads, out_bias=attn.out_proj.bias)

        return [site(b) for b in self._blocks[start - 1:]]

    def block_views(self, start: int) -> list[BlockView]:
        def view(b) -> BlockView:
            attn = b.attn
            qkv = lambda x: tuple(F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1))  # noqa: E731
            return BlockView(ln_1=b.ln_1, qkv=qkv, heads=attn.num_heads, out_proj=attn.out_proj, ln_2=b.ln_2,
                             mlp=b.mlp, module=b, ls_1=b.ls_1, ls_2=b.ls_2)

        return [view(b) for b in self._blocks[start - 1:]]

    def token_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """Every token through ln_post and proj, as the ViT reads its pooled token."""
        visual = self.model.visual
        return visual.ln_post(hidden) @ visual.proj

    def layer_features(self, hidden: torch.Tensor) -> tuple[torch.Tensor, None]:
        """LeGrad on open_clip (the authors' compute_legrad_clip): ln_post of the mean of all
        tokens, times proj."""
        visual = self.model.visual
        return visual.ln_post(hidden.mean(dim=1)) @ visual.proj, None


class _StagesAdapter(OpenClipAdapter):
    """Convolutional stages (a ResNet's layer1..4, a ConvNeXt's stages): N, C, H, W outputs read as
    H×W tokens, no prefix, each stage with its own grid (measured once, on a blank input)."""

    layer_noun = "stage"
    sublayers = ("output",)
    default_sublayer = "output"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._stages = self.stage_modules()
        self._shapes = self._measure()

    def stage_modules(self) -> list[torch.nn.Module]:
        raise NotImplementedError

    def _measure(self) -> list[tuple[int, int, int]]:
        """(channels, rows, cols) of every stage's output for the model's input size."""
        shapes: list[tuple[int, int, int]] = [None] * len(self._stages)  # type: ignore[list-item]
        hooks = [m.register_forward_hook(lambda _m, _a, out, i=i: shapes.__setitem__(i, tuple(out.shape[1:])))
                 for i, m in enumerate(self._stages)]
        try:
            with torch.no_grad():
                self.model.visual(torch.zeros(1, 3, *self.image_size, device=self.device, dtype=self.dtype))
        finally:
            for hook in hooks:
                hook.remove()
        return shapes

    @property
    def num_layers(self) -> int:
        return len(self._stages)

    @property
    def default_layer(self) -> int:
        return self.num_layers  # the last stage, as the classic CLIP Grad-CAM demos

    @property
    def grid(self) -> tuple[int, int]:
        return self.grid_at(self.num_layers)

    def grid_at(self, layer: int) -> tuple[int, int]:
        _, rows, cols = self._shapes[layer - 1]
        return rows, cols

    @property
    def prefix(self) -> int:
        return 0

    def module(self, layer: int, sublayer: str) -> torch.nn.Module:
        self.check_sublayer(sublayer)
        return self._stages[self.check_layer(layer) - 1]

    def channels(self, sublayer: str) -> int:
        self.check_sublayer(sublayer)
        return self._shapes[-1][0]

    def channels_at(self, layer: int) -> int:
        return self._shapes[layer - 1][0]

    def tokens(self, output: torch.Tensor) -> torch.Tensor:
        return output.flatten(2).transpose(1, 2)  # (B, C, H, W) → (B, H·W, C)


class OpenClipResNetAdapter(_StagesAdapter):
    """open_clip's ModifiedResNet (OpenAI's RN50, RN101, RN50x4, …)."""

    family = "open_clip-resnet"
    family_label = "open_clip ResNet"
    capabilities = frozenset({"sublayer", "value_path", "surgery_path"})
    short_names = (
        # Score-CAM on stage 3, on the contrast, measured best of every method and target (0.972 pointing);
        # the gradient CAMs start on stage 2, where each of them measured best (XGrad-CAM 0.964).
        ShortName("shapes-rn", f"local-dir:{SHAPES_RN_DIR}", 4, "shapes world ResNet CLIP (open_clip), offline, "
                  "trained by clipcam",
                  start=Start(from_end=1, sublayer="output", target="contrast", method="scorecam", cam_layer=2,
                              evidence=("Quality per model family: shapes world",
                                        "Starting settings of the offline models"))),
        ShortName("rn50", "hf-hub:timm/resnet50_clip.openai", 4, "OpenAI CLIP RN50 (open_clip), 4 stages", 2048, 2048),
    )

    @classmethod
    def matches(cls, source: str, config: Any) -> bool:
        """open_clip's ModifiedResNet."""
        return type(config).__name__ == "ModifiedResNet"

    def stage_modules(self) -> list[torch.nn.Module]:
        visual = self.model.visual
        return [visual.layer1, visual.layer2, visual.layer3, visual.layer4]

    def value_pool(self) -> ValuePool:
        """MaskCLIP's ResNet reading (its MaskClipHead, non-pooling branch): every position of
        ``layer4`` through the pool's v_proj then c_proj, without the pool's positional embedding."""
        pool = self.model.visual.attnpool
        return ValuePool(pool, lambda x: pool.c_proj(pool.v_proj(x.flatten(2).transpose(1, 2))))  # (B, H·W, P)

    def attention_pool(self) -> PoolView:
        return attention_pool_view(self.model.visual.attnpool)


class OpenClipConvNeXtAdapter(_StagesAdapter):
    """A timm ConvNeXt trunk inside open_clip's TimmModel."""

    family = "open_clip-convnext"
    family_label = "open_clip timm ConvNeXt"

    @classmethod
    def matches(cls, source: str, config: Any) -> bool:
        """A timm trunk made of stages."""
        trunk = getattr(config, "trunk", None)
        return trunk is not None and hasattr(trunk, "stages")

    def stage_modules(self) -> list[torch.nn.Module]:
        return list(self.model.visual.trunk.stages)


class OpenClipTimmViTAdapter(OpenClipAdapter):
    """A timm VisionTransformer trunk inside open_clip's TimmModel (ViT-B-16-SigLIP and others):
    blocks ``norm1``, ``attn`` (fused ``qkv``), ``norm2``, ``mlp.fc1``, ``mlp.act``, ``mlp.fc2``."""

    family = "open_clip-timm-vit"
    family_label = "open_clip timm ViT"
    sublayers = ("norm1", "attn", "norm2", "mlp.fc1", "mlp.act", "mlp.fc2", "block")
    default_sublayer = "mlp.fc1"
    wide_sublayers = ("mlp.fc1", "mlp.act")

    @classmethod
    def matches(cls, source: str, config: Any) -> bool:
        """A timm trunk with transformer blocks over patch embeddings."""
        trunk = getattr(config, "trunk", None)
        return trunk is not None and hasattr(trunk, "blocks") and hasattr(trunk, "patch_embed")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.trunk = self.model.visual.trunk
        self._blocks = list(self.trunk.blocks)

    @property
    def num_layers(self) -> int:
        return len(self._blocks)

    @property
    def grid(self) -> tuple[int, int]:
        rows, cols = self.trunk.patch_embed.grid_size
        return int(rows), int(cols)

    @property
    def prefix(self) -> int:
        return int(getattr(self.trunk, "num_prefix_tokens", 1))

    def module(self, layer: int, sublayer: str) -> torch.nn.Module:
        return self.block_module(self._blocks, layer, sublayer)

    def blocks(self) -> Sequence[torch.nn.Module]:
        return tuple(self._blocks)

    def channels(self, sublayer: str) -> int:
        block = self._blocks[0]
        wide = self.check_sublayer(sublayer) in self.wide_sublayers
        return block.mlp.fc1.out_features if wide else self.trunk.embed_dim

    def dead_reason(self, layer: int, sublayer: str) -> str | None:
        """With timm's class-token pooling the last block is like CLIP's (only ``norm1`` feeds the
        class token's keys and values); attention-pool and mean pooling read every token."""
        if getattr(self.trunk, "global_pool", "") != "token":
            return None
        return self.class_token_dead_reason(layer, sublayer, ("norm1",))

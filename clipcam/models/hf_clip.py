"""Hugging Face transformers' CLIP and SigLIP (``CLIPModel``, ``SiglipModel``) as model adapters.

Both are pre-norm ViTs with the same block layout (``layer_norm1``, ``self_attn.{q,k,v,out}_proj``,
``layer_norm2``, ``mlp.fc1``, ``mlp.fc2``), so they share one adapter and differ in the readout:

- CLIP reads the image embedding from the class token after the last block (``post_layernorm``,
  ``visual_projection``), and scores ``logit_scale`` × cosine; its probabilities are a softmax.
- SigLIP has no class token: an attention-pooling head (a learned probe attending over every
  token) makes the embedding, the score is ``logit_scale`` × cosine + ``logit_bias``, and each
  prompt's probability is its own sigmoid. Its processor squashes the image to a square without
  cropping, so its maps cover the whole image.

Layers are numbered 1..N as people count them: layer 11 of ViT-B/32 is
``vision_model.encoder.layers[10]``. The token grid is read from the config, never assumed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from ..constants import SHAPES_MODEL_DIR, SHAPES_SIGLIP_DIR, SUBLAYERS
from ..geometry import CropGeometry, size_setting
from .base import AttentionSite, BlockView, ModelAdapter, ShortName, Start, TextInputs, ValuePool, special_free
from .files import check_index, check_safetensors_only

#: SigLIP's text encoder pads every prompt to this many tokens (its processor's max_length).
SIGLIP_TEXT_LENGTH = 64


class HFClipAdapter(ModelAdapter):
    """transformers' CLIPModel: class token first, 1 + rows × cols tokens."""

    family = "hf-clip"
    family_label = "CLIP (Hugging Face)"
    capabilities = frozenset({"sublayer", "attention", "class_token", "layer_readout", "dense", "value_path",
                              "parallel_path", "surgery_path"})
    sublayers = SUBLAYERS
    default_sublayer = "mlp.fc1"
    wide_sublayers = ("mlp.fc1",)
    library = "transformers"
    #: transformers' model_type of the family's config, and the model class that loads it.
    model_type = "clip"
    model_class = "CLIPModel"
    short_names = (
        ShortName("base", "openai/clip-vit-base-patch32", 12, "CLIP ViT-B/32, 7×7 patches", 768, 3072),
        ShortName("large", "openai/clip-vit-large-patch14", 24, "CLIP ViT-L/14, 16×16 patches", 1024, 4096),
        # Chefer from layer 1 of 4 is the best method and layer measured; the CAM methods start where
        # Grad-CAM on self_attn.v_proj measured best.
        ShortName("shapes", str(SHAPES_MODEL_DIR), 4, "shapes world, offline, trained by clipcam",
                  start=Start(from_end=3, sublayer="self_attn.v_proj", target="logit", method="chefer", cam_layer=2,
                              evidence=("Quality per model family: shapes world",
                                        "Heatmap quality with ground truth: shapes world"))),
    )

    @classmethod
    def matches(cls, source: str, config: Any) -> bool:
        """A transformers config of this family's model_type."""
        return getattr(config, "model_type", None) == cls.model_type

    def __init__(self, name, source, model, device, dtype, tokenizer, image_processor) -> None:
        super().__init__(name, source, model, device, dtype)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self._blocks = list(model.vision_model.encoder.layers)
        cfg = model.config.vision_config
        crop = image_processor.crop_size if getattr(image_processor, "do_center_crop", False) else None
        size = crop if crop is not None else image_processor.size
        seen = (size_setting(size, "height"), size_setting(size, "width"))
        if None not in seen and seen != (cfg.image_size, cfg.image_size):
            raise ValueError(
                f"The image processor makes {seen[1]}×{seen[0]} inputs but the vision model expects "
                f"{cfg.image_size}×{cfg.image_size} inputs."
            )

    # ------------------------------------------------------------------ layers
    @property
    def num_layers(self) -> int:
        return len(self._blocks)

    @property
    def grid(self) -> tuple[int, int]:
        cfg = self.model.config.vision_config
        side = cfg.image_size // cfg.patch_size
        return side, side

    @property
    def prefix(self) -> int:
        return 1

    def module(self, layer: int, sublayer: str) -> torch.nn.Module:
        return self.block_module(self._blocks, layer, sublayer)

    def blocks(self) -> Sequence[torch.nn.Module]:
        return tuple(self._blocks)

    def channels(self, sublayer: str) -> int:
        cfg = self.model.config.vision_config
        return cfg.intermediate_size if self.check_sublayer(sublayer) in self.wide_sublayers else cfg.hidden_size

    def dead_reason(self, layer: int, sublayer: str) -> str | None:
        """The image embedding is read from the CLS token after the last block. In the last block,
        patch tokens reach the CLS token only through the keys and values of its attention; after
        the attention every token is processed on its own, so the patch tokens of q_proj, out_proj,
        layer_norm2, fc1, fc2 and the block output never reach it: their gradient is zero."""
        return self.class_token_dead_reason(layer, sublayer, ("layer_norm1", "self_attn.k_proj", "self_attn.v_proj"),
                                            token="CLS token that CLIP reads the image embedding from")

    # ------------------------------------------------------------------ attention
    def attention_sites(self, start: int) -> list[AttentionSite]:
        heads = self.model.config.vision_config.num_attention_heads
        return [
            AttentionSite(
                reads=(b.self_attn.q_proj, b.self_attn.k_proj, b.self_attn.v_proj),
                split=lambda outs: tuple(o[0] for o in outs),
                out=b.self_attn.out_proj, out_weight=b.self_attn.out_proj.weight, heads=heads,
                out_bias=b.self_attn.out_proj.bias,
            )
            for b in self._blocks[start - 1:]
        ]

    def layer_features(self, hidden: torch.Tensor) -> tuple[torch.Tensor, None]:
        """LeGrad on CLIP (the authors' compute_legrad_clip): the mean of all tokens through the
        final layer norm and projection."""
        vision = self.model.vision_model
        return self.model.visual_projection(vision.post_layernorm(hidden.mean(dim=1))), None

    def block_views(self, start: int) -> list[BlockView]:
        heads = self.model.config.vision_config.num_attention_heads

        def view(b) -> BlockView:
            attn = b.self_attn
            return BlockView(ln_1=b.layer_norm1, qkv=lambda x: (attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)),
                             heads=heads, out_proj=attn.out_proj, ln_2=b.layer_norm2, mlp=b.mlp, module=b)

        return [view(b) for b in self._blocks[start - 1:]]

    def token_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """Every token through post_layernorm and visual_projection, as CLIP reads its class token."""
        return self.model.visual_projection(self.model.vision_model.post_layernorm(hidden))

    # ------------------------------------------------------------------ inputs
    def preprocess(self, rgb: Image.Image) -> torch.Tensor:
        pixels = self.image_processor(images=rgb, return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, self.dtype)  # (1, 3, S, S)

    def geometry(self, image_size: tuple[int, int], layer: int | None = None) -> CropGeometry:
        return CropGeometry.from_processor(self.image_processor, image_size, self.grid)

    @property
    def context_length(self) -> int:
        return self.model.config.text_config.max_position_embeddings

    def token_lengths(self, prompts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(list(prompts))["input_ids"]]

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=self.context_length,
                                return_tensors="pt")
        return self.model.get_text_features(
            input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device),
        ).pooler_output  # (K, P)

    # ------------------------------------------------------------------ scores
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.visual_projection(self.model.vision_model(pixel_values=pixels).pooler_output)

    # ------------------------------------------------------------------ text side (word relevance)
    def text_inputs(self, prompts: Sequence[str]) -> TextInputs:
        """CLIP's text encoder is causal, ignores padding (right-padded) and reads the embedding at
        the end-of-text token: the highest id for old configs (eos_token_id 2), else the first eos id."""
        tokens = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=self.context_length,
                                return_tensors="pt")
        ids, present = tokens["input_ids"], tokens["attention_mask"].bool()  # (K, T)
        eos = self.model.text_model.eos_token_id
        pooled = ids.argmax(dim=-1) if eos == 2 else (ids == eos).int().argmax(dim=-1)
        t = ids.shape[1]
        mask = torch.ones(t, t, dtype=torch.bool).tril()[None] & present[:, None, :]  # (K, T, T)
        keep, pieces = special_free(self.tokenizer, ids, present)
        return TextInputs(ids=ids, mask=mask, pooled=pooled, keep=keep, pieces=pieces)

    @property
    def text_num_layers(self) -> int:
        return len(self.model.text_model.encoder.layers)

    def text_sites(self, start: int) -> list[AttentionSite]:
        heads = self.model.config.text_config.num_attention_heads
        return [
            AttentionSite(reads=(b.self_attn.q_proj, b.self_attn.k_proj, b.self_attn.v_proj),
                          split=lambda outs: tuple(o.float() for o in outs),
                          out=b.self_attn.out_proj, out_weight=b.self_attn.out_proj.weight, heads=heads)
            for b in list(self.model.text_model.encoder.layers)[start - 1:]
        ]

    def text_token_embedding(self) -> torch.nn.Module:
        return self.model.text_model.embeddings.token_embedding

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()


class SiglipAdapter(HFClipAdapter):
    """transformers' SiglipModel: no class token, an attention-pooling head, sigmoid scores."""

    family = "siglip"
    family_label = "SigLIP (Hugging Face)"
    capabilities = frozenset({"sublayer", "attention", "layer_readout", "dense", "value_path"})
    prob_kind = "sigmoid"
    model_type = "siglip"
    model_class = "SiglipModel"
    short_names = (
        ShortName("siglip", "google/siglip-base-patch16-224", 12, "SigLIP B/16, 14×14 patches, sigmoid scores",
                  768, 3072),
        # Grad-CAM element-wise on its one layer's v_proj, on the logit, measured best of every method,
        # sublayer and target (0.972 pointing; HiResCAM 0.944).
        ShortName("shapes-siglip", str(SHAPES_SIGLIP_DIR), 1, "shapes world SigLIP, offline, trained by clipcam",
                  start=Start(from_end=0, sublayer="self_attn.v_proj", target="logit", method="gradcam-elementwise",
                              evidence=("Quality per model family: shapes world",
                                        "Starting settings of the offline models"))),
    )

    @property
    def prefix(self) -> int:
        return 0

    token_readout = ModelAdapter.token_readout  # the pooling head reads every token at once, none on its own

    def dead_reason(self, layer: int, sublayer: str) -> str | None:
        """None: the pooling head's probe attends over every token of the last layer, so every
        sublayer of every layer reaches the embedding."""
        return None

    def layer_features(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LeGrad on SigLIP (the authors' compute_legrad_siglip): the layer's tokens go through the
        attention-pooling head as they are (no final layer norm, as in their code), and the map is
        read from the head's attention probabilities (1, H, 1, T), which are returned too.

        The head is recomputed here with its attention written out (the same maths as its
        nn.MultiheadAttention), so that its probabilities are a tensor the gradient can reach."""
        head = self.model.vision_model.head
        attn = head.attention
        d = attn.embed_dim
        heads = attn.num_heads
        w_q, w_k, w_v = attn.in_proj_weight.split(d)
        b_q, b_k, b_v = attn.in_proj_bias.split(d)
        probe = head.probe.expand(hidden.shape[0], -1, -1)  # (B, 1, D)
        q = torch.nn.functional.linear(probe, w_q, b_q)  # (B, 1, D)
        k = torch.nn.functional.linear(hidden, w_k, b_k)  # (B, T, D)
        v = torch.nn.functional.linear(hidden, w_v, b_v)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, d // heads).transpose(1, 2)  # (B, H, *, d)
        probs = torch.softmax(split(q) @ split(k).transpose(-1, -2) * (d // heads) ** -0.5, dim=-1)  # (B, H, 1, T)
        out = (probs @ split(v)).transpose(1, 2).reshape(hidden.shape[0], 1, d)  # (B, 1, D)
        out = attn.out_proj(out)
        pooled = out + head.mlp(head.layernorm(out))
        return pooled[:, 0], probs

    def value_pool(self) -> ValuePool:
        """clipcam's adaptation of MaskCLIP's reading to SigLIP (no author defines it): every token
        that the pooling head reads (after ``post_layernorm``) through the head's value path alone,
        its out_proj of W_v·x + b_v, then the head's MLP residual, y + mlp(layernorm(y))."""
        head = self.model.vision_model.head
        attn = head.attention
        _, w_v = attn.in_proj_weight.split((2 * attn.embed_dim, attn.embed_dim))
        b_v = attn.in_proj_bias[2 * attn.embed_dim:]

        def values(hidden: torch.Tensor) -> torch.Tensor:
            y = attn.out_proj(torch.nn.functional.linear(hidden, w_v, b_v))  # (B, T, D)
            return y + head.mlp(head.layernorm(y))

        return ValuePool(head, values)

    def dense_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """The last block's tokens (B, T, D) each through ``post_layernorm`` and the pooling head's
        value path (``value_pool``): clipcam's adaptation, as SigLIP reads no token on its own."""
        return self.value_pool().values(self.model.vision_model.post_layernorm(hidden))

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(prompts), padding="max_length", truncation=True,
                                max_length=self.context_length, return_tensors="pt")
        return self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device)).pooler_output

    @property
    def context_length(self) -> int:
        return min(SIGLIP_TEXT_LENGTH, self.model.config.text_config.max_position_embeddings)

    def text_inputs(self, prompts: Sequence[str]) -> TextInputs:
        """SigLIP's text encoder is bidirectional, reads every padded position (no attention mask,
        as it was trained) and takes the embedding from the last position."""
        ids = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=self.context_length,
                             return_tensors="pt")["input_ids"]  # (K, T)
        k, t = ids.shape
        present = torch.ones(k, t, dtype=torch.bool)
        keep, pieces = special_free(self.tokenizer, ids, present)
        return TextInputs(ids=ids, mask=torch.ones(k, t, t, dtype=torch.bool), pooled=torch.full((k,), t - 1),
                          keep=keep, pieces=pieces)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.vision_model(pixel_values=pixels).pooler_output  # the head's output (B, P)

    @property
    def logit_bias(self) -> torch.Tensor:
        return self.model.logit_bias


def read_config(source: str) -> tuple[str, Any]:
    """A transformers model's source (a local folder resolved, after its weights are checked to be
    safetensors; a hub id, after its weights index is) and its config, which says its family."""
    # transformers is imported on the first load only: importing clipcam must not pay for it
    from transformers import AutoConfig

    local = Path(source).expanduser()
    if local.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        check_safetensors_only(local, "Model path")
        source = str(local.resolve())
    else:
        _check_hub_index(source)
    return source, AutoConfig.from_pretrained(source, trust_remote_code=False)


def build_hf(source: str, model_class: str, dtype: torch.dtype) -> tuple[torch.nn.Module, Any, Any]:
    """The model (transformers' ``model_class``, safetensors weights only), its tokenizer and its
    image processor, as its folder or hub repository saves them."""
    import transformers  # on the first load only, as in read_config

    kind = model_class.removesuffix("Model").lower()
    try:
        model = getattr(transformers, model_class).from_pretrained(source, use_safetensors=True,
                                                                   trust_remote_code=False, dtype=dtype)
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        image_processor = transformers.AutoImageProcessor.from_pretrained(source, trust_remote_code=False)
    except ImportError as err:
        raise ValueError(missing_package_sentence(source, err)) from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{source!r} is not a {kind} model clipcam can load: {str(err).splitlines()[0][:200]}") from None
    return model, tokenizer, image_processor


#: How transformers names a missing library in its ImportError, and the package that provides it.
_PACKAGES = {"sentencepiece": "sentencepiece", "protobuf": "protobuf", "tiktoken": "tiktoken",
             "open_clip": "open-clip-torch"}


def missing_package_sentence(source: str, err: ImportError) -> str:
    """The one sentence for a tokenizer or processor whose library is not installed: which package,
    and how to install it (SigLIP's SentencePiece tokenizer needs ``sentencepiece``)."""
    named = re.search(r"requires the (\w+) library", str(err))
    found = (named.group(1) if named else getattr(err, "name", None) or "").lower()
    package = _PACKAGES.get(found, found.split(".")[0]) or "a package"
    return (f"Loading {source!r} needs the Python package {package}, which is not installed: "
            f"install it with pip install {package}.")


def _check_hub_index(repo: str) -> None:
    """For a hub model with sharded weights, refuse an index that names non-safetensors shards."""
    # huggingface_hub is imported on the first load only, as in read_config
    from huggingface_hub import hf_hub_download

    try:
        index = hf_hub_download(repo, "model.safetensors.index.json")
    except Exception:  # noqa: BLE001 - no index (a single file) or the hub is unreachable: from_pretrained says
        return
    check_index(Path(index))

"""Tiny seeded models of every family clipcam explains: one table, ``FAMILIES``.

The hub cannot be reached from tests, so each builder makes a small random model and writes it
the way the family's hub repositories publish it — ``save_pretrained`` weights, the family's
real tokenizer class and files (clipcam.testing.tokenizers) and its processor config for
transformers; ``open_clip_config.json`` and ``open_clip_model.safetensors`` for open_clip — so
that clipcam loads it through the same path a hub model takes.

The library's default init leaves every bias at 0 and every LayerNorm the identity, which hides
any bug that drops a bias or a norm (issue 22). So every tiny model gets seeded non-zero biases
and norm parameters (``perturb``): every normalisation's weight 1 + N(0, 0.5²) and bias
N(0, 0.5²), and every other bias (the attention's ``in_proj_bias``, the pooling heads' too) as
large, relative to its layer's output. Random weights: for checking maths, geometry and
plumbing, not what a model sees.

    source = tiny_model("siglip", tmp_path / "siglip", seed=3)  # what load_explainer takes
    ex = load_explainer(source, device="cpu")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import open_clip
import torch
from safetensors.torch import save_file
from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer, Siglip2Config,
                          Siglip2ImageProcessor, Siglip2Model, SiglipConfig, SiglipImageProcessor, SiglipModel)

from .tokenizers import BOS, DEFAULT_WORDS, EOS, clip_tokenizer, gemma_word_tokenizer, siglip_tokenizer, word_tokenizer

#: The spread of the seeded biases and of the norms' weights around 1.
PERTURB_SCALE = 0.5

_NORMS = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._BatchNorm)


def perturb(model: torch.nn.Module, seed: int, scale: float = PERTURB_SCALE) -> torch.nn.Module:
    """Seeded non-zero biases and non-identity norms: every normalisation's weight 1 + N(0, scale²)
    and bias N(0, scale²); every other bias (a Linear's, a convolution's, an attention's
    ``in_proj_bias``) N(0, (scale·r)²), where r is the mean norm of its weight's rows, the spread of
    the layer's output for inputs of unit spread, so that a bias matters as much as a norm's
    without drowning the input (transformers' 0.02-std weights give outputs of about 0.1).
    SigLIP's ``logit_bias`` (the score's offset, set on purpose) is left as it is."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            params = dict(module.named_parameters(recurse=False))
            for name, param in params.items():
                noise = torch.randn(param.shape, generator=gen) * scale
                weight = params.get(name.replace("bias", "weight"))
                if isinstance(module, _NORMS):
                    param.copy_(1 + noise if name == "weight" else noise)
                elif name.endswith("bias") and name != "logit_bias":
                    rows = weight.flatten(1).norm(dim=1).mean() if weight is not None and weight.ndim >= 2 else 1.0
                    param.copy_(noise * rows)
    return model


def tiny_config(tokenizer: CLIPTokenizer, image_size: int = 32, patch_size: int = 8, hidden: int = 32,
                layers: int = 2, heads: int = 4, projection: int = 16) -> CLIPConfig:
    """A small CLIPConfig in the style of transformers' own CLIP tests (hidden 32, two layers)."""
    vocab = tokenizer.get_vocab()
    text = dict(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                num_attention_heads=heads, max_position_embeddings=32, bos_token_id=vocab[BOS],
                eos_token_id=vocab[EOS], pad_token_id=vocab[EOS])
    vision = dict(hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers, num_attention_heads=heads,
                  image_size=image_size, patch_size=patch_size)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection)


def architecture_config(arch: str, tokenizer: CLIPTokenizer) -> CLIPConfig:
    """The real ViT-B/32 ("base") or ViT-L/14 ("large") architecture, for timing with random weights."""
    vocab = tokenizer.get_vocab()
    ids = dict(bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS])
    if arch == "base":
        text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8, **ids)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=32)
        return CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)
    if arch == "large":
        text = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, **ids)
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=224, patch_size=14)
        return CLIPConfig(text_config=text, vision_config=vision, projection_dim=768)
    raise ValueError(f"Unknown architecture {arch!r}: use 'base' or 'large'.")


def save_clip(path: Path, seed: int, config: CLIPConfig | None = None, tokenizer: CLIPTokenizer | None = None,
              words: Sequence[str] = (), **config_kwargs) -> Path:
    """transformers' CLIPModel with OpenAI's BPE tokenizer (or, given ``words``, the word-level
    CLIPTokenizer the shapes models ship) and a resize-then-centre-crop processor (openai/clip-*'s
    files); ``config_kwargs`` go to ``tiny_config`` (image_size, patch_size, layers…)."""
    tokenizer = tokenizer or (word_tokenizer(words) if words else clip_tokenizer())
    config = config or tiny_config(tokenizer, **config_kwargs)
    torch.manual_seed(seed)
    model = perturb(CLIPModel(config).eval(), seed)
    size = config.vision_config.image_size
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(path)
    return path


def _siglip_temperature(model: torch.nn.Module) -> None:
    """SigLIP's initial temperature and bias (log 10, -10), as the paper trains from."""
    with torch.no_grad():
        model.logit_scale.fill_(torch.log(torch.tensor(10.0)))
        model.logit_bias.fill_(-10.0)


def save_siglip(path: Path, seed: int, image_size: int = 32, patch_size: int = 8, hidden: int = 32, layers: int = 2,
                heads: int = 4) -> Path:
    """transformers' SiglipModel with a SiglipTokenizer (``spiece.model``) and a squashing
    processor, as google/siglip-* publish them; its text is padded to 16 tokens."""
    tokenizer = siglip_tokenizer()
    text = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                num_attention_heads=heads, max_position_embeddings=16, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, projection_size=hidden)
    vision = dict(hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                  num_attention_heads=heads, image_size=image_size, patch_size=patch_size)
    torch.manual_seed(seed)
    model = perturb(SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).eval(), seed)
    _siglip_temperature(model)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    SiglipImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


def save_siglip2(path: Path, seed: int, patch_size: int = 4, max_num_patches: int = 48, hidden: int = 32,
                 layers: int = 2, heads: int = 4) -> Path:
    """transformers' Siglip2Model (SigLIP 2 NaFlex) with a Gemma-style ``tokenizer.json`` and an
    image processor that keeps each image's aspect ratio within ``max_num_patches`` patches, as
    google/siglip2-*-naflex publish them. Its position embeddings are a 4×4 grid, resized to every image's."""
    tokenizer = gemma_word_tokenizer()
    text = dict(vocab_size=len(tokenizer.get_vocab()), hidden_size=hidden, intermediate_size=hidden * 4,
                num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=64,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, projection_size=hidden)
    vision = dict(hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                  num_attention_heads=heads, patch_size=patch_size, num_patches=16)
    torch.manual_seed(seed)
    model = perturb(Siglip2Model(Siglip2Config(text_config=text, vision_config=vision)).eval(), seed)
    _siglip_temperature(model)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    Siglip2ImageProcessor(patch_size=patch_size, max_num_patches=max_num_patches).save_pretrained(path)
    return path


def open_clip_config(kind: str, image_size: int) -> dict:
    """A tiny open_clip model config: "vit" (open_clip's VisionTransformer), "resnet" (ModifiedResNet),
    a timm trunk: "timm-vit" (ViT with an attention-pooling head) or "convnext", or "custom-text"
    (a CustomTextCLIP whose TextTransformer is bidirectional and pooled at the last position, the
    text-tower layout of open_clip's SigLIP models)."""
    text = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2}
    if kind == "custom-text":
        vision = {"image_size": image_size, "patch_size": 8, "width": 32, "layers": 2, "head_width": 8}
        return {"embed_dim": 16, "custom_text": True, "vision_cfg": vision,
                "text_cfg": {**text, "no_causal_mask": True, "pool_type": "last"}}
    if kind == "vit":
        vision = {"image_size": image_size, "patch_size": 8, "width": 32, "layers": 3, "head_width": 8}
    elif kind == "resnet":
        vision = {"image_size": image_size, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8}
    elif kind == "timm-vit":  # a timm ViT trunk read out by an attention-pooling head, like ViT-B-16-SigLIP
        vision = {"image_size": image_size, "timm_model_name": "vit_tiny_patch16_224", "timm_model_pretrained": False,
                  "timm_pool": "map", "timm_proj": "none"}  # the trunk's own head: 192-wide embeddings
    elif kind == "convnext":
        vision = {"image_size": image_size, "timm_model_name": "convnext_atto", "timm_model_pretrained": False,
                  "timm_pool": "avg", "timm_proj": "linear"}
    else:
        raise ValueError(f"Unknown open_clip test model {kind!r}: use 'vit', 'resnet', 'timm-vit', 'convnext' or "
                         "'custom-text'.")
    return {"embed_dim": 192 if kind == "timm-vit" else 16, "vision_cfg": vision, "text_cfg": text}


def save_open_clip(path: Path, seed: int, kind: str = "vit", image_size: int | None = None,
                   resize_mode: str = "shortest") -> Path:
    """An open_clip model in open_clip's local-dir layout (its own CLIP BPE tokenizer, from the config)."""
    image_size = image_size or {"vit": 40, "resnet": 64, "custom-text": 40}.get(kind, 224)  # timm: their own size
    model_cfg = open_clip_config(kind, image_size)
    torch.manual_seed(seed)
    build = open_clip.model.CustomTextCLIP if model_cfg.get("custom_text") else open_clip.model.CLIP
    model = perturb(build(**{k: v for k, v in model_cfg.items() if k != "custom_text"}).eval(), seed)
    preprocess = {"size": [image_size, image_size], "mode": "RGB", "mean": list(open_clip.OPENAI_DATASET_MEAN),
                  "std": list(open_clip.OPENAI_DATASET_STD), "interpolation": "bicubic",
                  "resize_mode": resize_mode, "fill_color": 0}
    path.mkdir(parents=True, exist_ok=True)
    (path / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "open_clip_model.safetensors"))
    return path


@dataclass(frozen=True)
class Builder:
    """How one family's tiny model is made: ``save(path, seed, **options)`` writes its folder, and
    clipcam names that folder ``prefix + path`` (open_clip's ``local-dir:``)."""

    save: Callable[..., Path]
    prefix: str = ""
    options: dict = field(default_factory=dict)


#: The tiny model of every family, by a short key.
FAMILIES: dict[str, Builder] = {
    "clip": Builder(save_clip),
    "clip-words": Builder(save_clip, options={"words": DEFAULT_WORDS}),  # the shapes models' tokenizer
    "siglip": Builder(save_siglip),
    "siglip2": Builder(save_siglip2),
    "openclip-vit": Builder(save_open_clip, "local-dir:", {"kind": "vit"}),
    "openclip-rn": Builder(save_open_clip, "local-dir:", {"kind": "resnet"}),
    "openclip-timm-vit": Builder(save_open_clip, "local-dir:", {"kind": "timm-vit"}),
    "openclip-convnext": Builder(save_open_clip, "local-dir:", {"kind": "convnext"}),
    "openclip-custom-text": Builder(save_open_clip, "local-dir:", {"kind": "custom-text"}),
}


def tiny_model(family: str, path: str | Path, seed: int = 0, **options) -> str:
    """Save ``family``'s tiny model (a key of FAMILIES) into the folder ``path`` with ``seed`` and
    the builder's ``options`` (image_size, layers, …), and return the name clipcam loads it by: the
    folder for transformers families, ``local-dir:FOLDER`` for open_clip."""
    builder = FAMILIES[family]
    folder = builder.save(Path(path), seed, **{**builder.options, **options})
    return builder.prefix + str(folder)


def model_folder(source: str) -> Path:
    """The folder of a tiny model from the name ``tiny_model`` returned."""
    return Path(source.removeprefix("local-dir:"))

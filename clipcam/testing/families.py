"""Tiny seeded models of every family clipcam explains, saved in each family's own format.

The hub cannot be reached from tests, so each builder makes a small random model and writes it
the way the family publishes models — ``save_pretrained`` for transformers' SiglipModel and
Siglip2Model (with its processor), an
``open_clip_config.json`` plus ``open_clip_model.safetensors`` folder for open_clip — so that
clipcam loads it through the same path a hub model takes. Random weights: for checking maths,
geometry and plumbing, not what a model sees.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from . import BOS, DEFAULT_WORDS, EOS, word_tokenizer


def save_random_siglip(path: str | Path, seed: int = 0, image_size: int = 32, patch_size: int = 8,
                       hidden: int = 32, layers: int = 2, heads: int = 4) -> Path:
    """A seeded random transformers SiglipModel with a word tokenizer and a squashing processor."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    path = Path(path)
    tokenizer = word_tokenizer()
    vocab = tokenizer.get_vocab()
    text = dict(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                num_attention_heads=heads, max_position_embeddings=16, pad_token_id=vocab[EOS],
                bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], projection_size=hidden)
    vision = dict(hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                  num_attention_heads=heads, image_size=image_size, patch_size=patch_size)
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).eval()
    with torch.no_grad():  # SigLIP's initial temperature and bias (log 10, -10), as the paper trains from
        model.logit_scale.fill_(torch.log(torch.tensor(10.0)))
        model.logit_bias.fill_(-10.0)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    SiglipImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


def gemma_word_tokenizer(words=DEFAULT_WORDS):
    """A small transformers Siglip2Tokenizer (SigLIP 2's Gemma-style BPE with lower-casing, "▁" for
    spaces and byte fallback) whose merges spell ``words`` as single tokens, with and without a
    leading "▁"; every other ASCII character is a token of its own. It pads at the end, as
    big_vision's SigLIP 2 tokenizer does."""
    from transformers import Siglip2Tokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for sym in string.ascii_lowercase + string.digits + string.punctuation + "▁":
        vocab.setdefault(sym, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(w.lower() for w in words):
        for spelled in (word, "▁" + word):
            left = spelled[0]
            for right in spelled[1:]:
                if left + right not in vocab:
                    vocab[left + right] = len(vocab)
                    merges.append((left, right))
                left += right
    return Siglip2Tokenizer(vocab=vocab, merges=merges, padding_side="right")


def save_random_siglip2(path: str | Path, seed: int = 0, patch_size: int = 4, max_num_patches: int = 48,
                        hidden: int = 32, layers: int = 2, heads: int = 4) -> Path:
    """A seeded random transformers Siglip2Model (SigLIP 2 NaFlex) saved with its Siglip2Processor: a
    Gemma-style word tokenizer and an image processor that keeps each image's aspect ratio within
    ``max_num_patches`` patches. Its position embeddings are a 4×4 grid, resized to every image's."""
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor

    path = Path(path)
    tokenizer = gemma_word_tokenizer()
    text = dict(vocab_size=len(tokenizer.get_vocab()), hidden_size=hidden, intermediate_size=hidden * 4,
                num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=64,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, projection_size=hidden)
    vision = dict(hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                  num_attention_heads=heads, patch_size=patch_size, num_patches=16)
    torch.manual_seed(seed)
    model = Siglip2Model(Siglip2Config(text_config=text, vision_config=vision)).eval()
    with torch.no_grad():  # SigLIP's initial temperature and bias (log 10, -10)
        model.logit_scale.fill_(torch.log(torch.tensor(10.0)))
        model.logit_bias.fill_(-10.0)
    model.save_pretrained(path, safe_serialization=True)
    processor = Siglip2ImageProcessor(patch_size=patch_size, max_num_patches=max_num_patches)
    Siglip2Processor(image_processor=processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def open_clip_config(kind: str, image_size: int) -> dict:
    """A tiny open_clip model config: "vit" (open_clip's VisionTransformer), "resnet" (ModifiedResNet),
    or a timm trunk: "timm-vit" (ViT with an attention-pooling head) or "convnext"."""
    text = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2}
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
        raise ValueError(f"Unknown open_clip test model {kind!r}: use 'vit', 'resnet', 'timm-vit' or 'convnext'.")
    return {"embed_dim": 192 if kind == "timm-vit" else 16, "vision_cfg": vision, "text_cfg": text}


def save_random_open_clip(path: str | Path, kind: str = "vit", seed: int = 0, image_size: int | None = None,
                          resize_mode: str = "shortest") -> Path:
    """A seeded random open_clip model in open_clip's local-dir layout; load it as ``local-dir:PATH``."""
    import open_clip
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    image_size = image_size or {"vit": 40, "resnet": 64}.get(kind, 224)  # timm trunks keep their own input size
    model_cfg = open_clip_config(kind, image_size)
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**model_cfg).eval()
    preprocess = {"size": [image_size, image_size], "mode": "RGB", "mean": list(open_clip.OPENAI_DATASET_MEAN),
                  "std": list(open_clip.OPENAI_DATASET_STD), "interpolation": "bicubic",
                  "resize_mode": resize_mode, "fill_color": 0}
    (path / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "open_clip_model.safetensors"))
    return path

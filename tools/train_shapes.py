"""Train the shapes-world models shipped in clipcam/assets/: a CLIP, a SigLIP and a ResNet CLIP, one per family.

    python tools/train_shapes.py                       # the CLIP in clipcam/assets/shapes-clip (seed 0)
    python tools/train_shapes.py --family siglip       # the SigLIP in clipcam/assets/shapes-siglip
    python tools/train_shapes.py --family rn           # the open_clip ResNet CLIP in clipcam/assets/shapes-rn
    python tools/train_shapes.py --steps 200 --out /tmp/shapes-try   # a quick try

Scenes come from clipcam.eval.shapes. Captions name a random subset of a scene's objects in random
order ("a photo of a red circle and a blue square."), and about 30 % of each batch are copies of
other scenes in it with the colours swapped between the shapes, captioned the same way — hard
negatives that make the model bind colour to shape and look at the object it names instead of
learning one "an image with objects" direction. AdamW with warm-up and cosine decay. Each family
is saved in its own format and loaded back through its own loader:

- ``clip``: transformers ``CLIPModel`` (ViT, 8×8 patch grid), CLIP's contrastive softmax loss. A
  quarter of the objects a caption names are named by their colour or their shape only ("a photo
  of a red and a circle.", ``--partial 0.25``), so the model also reads a prompt with a word left
  out, as word relevance and occlusion leave it (a model that only ever saw both words scored such
  prompts out of its experience, and removing a wrong shape word rarely raised its score). Such a
  caption is true of many images of a batch, so every caption true of an image is a positive of
  it, the soft targets spread evenly over them in both directions (``--positives all``), where CLIP's own
  labels (``diagonal``) would call the others false.
- ``siglip``: transformers ``SiglipModel`` (ViT, 8×8 grid, attention-pooling head), SigLIP's sigmoid
  loss (Zhai et al., ICCV 2023) with a learnable temperature and bias: t' = log 10 as in the paper,
  and b at the prior log-odds of a positive pair, as the paper's b = -10 is for its batches (see
  siglip_bias). A pair is positive when everything its caption names is in the image (a caption
  naming one object is true of every image that has it), not only on the diagonal: the captions
  repeat within a batch, and the paper's diagonal labels would call the same caption of the same
  kind of scene both true and false (a run with them did not learn). Each caption names one object
  (``--max-named 1``): with one to three, the sigmoid loss first learns how many objects a caption
  names and how many an image has (a caption naming one object is true of far more images), and
  stayed there (zero-shot 0.39 after 300 steps, 0.27 after 1300; one object per caption: 0.67 after
  300). No gradient clipping: the loss sums over the batch's captions, and clipping its norm to 1
  slowed learning (0.30 against 0.39 after 300 steps). Text is padded to 32 tokens and pooled at
  the last one, as SigLIP is; the processor squashes the image to a square without a crop. The
  image tower has one layer (``--vision-layers 1``): the pooling head reads every token, and in
  deeper towers the tokens carried the whole scene, so no method's map could single out the named
  object (pointing game 0.867 at best with 4 layers, 0.907 with 2, 0.972 with 1; BENCHMARKS.md).
- ``rn``: an open_clip ``CLIP`` with a ``ModifiedResNet`` image tower (scenes upsampled to 128 px by
  its own transform, so ``layer4`` has a 4×4 grid) and open_clip's CLIP BPE tokenizer, CLIP's
  contrastive loss; saved as an open_clip local directory (``open_clip_config.json`` and
  ``open_clip_model.safetensors``) for ``open_clip.create_model_and_transforms("local-dir:...")``.

Held-out zero-shot accuracy and colour binding go to ``training.json`` next to the weights.
Training is not part of the tests or CI; using the shipped models is.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clipcam.eval.shapes import (  # noqa: E402
    COLOURS, SHAPES, SIZE, VOCABULARY, ShapeObject, caption_of, object_prompt, random_scene, render, swap_colours,
)
from clipcam.constants import SHAPES_MODEL_DIR, SHAPES_RN_DIR, SHAPES_SIGLIP_DIR  # noqa: E402
from clipcam.testing import BOS, EOS, word_tokenizer  # noqa: E402

#: Text length of the SigLIP and open_clip models (the longest caption, three objects, is 17 tokens).
CONTEXT = 32


def positive_share(max_named: int, batches: int = 5, size: int = 128) -> float:
    """The share of positive pairs in make_batch's batches (from its own seeded batches): about 0.19
    when a caption names one object, 0.11 when it names one to three."""
    rng = np.random.default_rng(12345)
    return float(np.mean([make_batch(rng, size, 0.3, max_named)[2].mean() for _ in range(batches)]))


def siglip_bias(max_named: int) -> float:
    """SigLIP's starting bias: the prior log-odds of a positive pair. The paper starts at b = -10,
    about the log-odds of a positive pair in its 32k-pair batches, so that the first steps are not
    spent on the imbalance. Here a caption is true of every image that shows what it names, so
    about 19 % of a batch's pairs are positive with one object per caption (b ≈ -1.5). Started at
    -10 with t = 10, a positive pair's logit cannot exceed 0, and the model did not learn
    (zero-shot 0.27 after 1300 steps)."""
    share = positive_share(max_named)
    return math.log(share / (1 - share))


#: SigLIP's temperature's and bias's learning rate, as a multiple of the rest's.
LOGIT_LR_FACTOR = 10.0
#: open_clip's ResNet sees the scenes at this size: its stem and stages divide by 32, so layer4 is 4×4.
RN_IMAGE_SIZE = 128

FAMILIES = {
    # the CLIP: a quarter of the named objects named by colour or shape only, every true caption a positive
    "clip": dict(steps=1800, batch=128, lr=1e-3, warmup=100, max_named=3, clip_grad=1.0, partial=0.25,
                 positives="all", vision_layers=4, out=SHAPES_MODEL_DIR),
    # SigLIP: one object per caption, no gradient clipping, one image layer (see the module's docstring)
    "siglip": dict(steps=1800, batch=128, lr=1e-3, warmup=100, max_named=1, clip_grad=0.0, partial=0.0,
                   positives=None, vision_layers=1,
                   out=SHAPES_SIGLIP_DIR),
    "rn": dict(steps=1000, batch=128, lr=1e-3, warmup=100, max_named=3, clip_grad=1.0, partial=0.0,
               positives=None, vision_layers=None,
               out=SHAPES_RN_DIR),
}


def shapes_config(tokenizer, vision_layers: int = 4) -> CLIPConfig:
    vocab = tokenizer.get_vocab()
    ids = dict(bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS])
    text = dict(vocab_size=len(vocab), hidden_size=128, intermediate_size=512, num_hidden_layers=3,
                num_attention_heads=4, max_position_embeddings=32, **ids)
    vision = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=vision_layers, num_attention_heads=4,
                  image_size=SIZE, patch_size=8)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=64)


def siglip_config(tokenizer, vision_layers: int = 1):
    """The shapes CLIP's sizes in SigLIP's architecture (no projection: both towers end at 128)."""
    from transformers import SiglipConfig

    vocab = tokenizer.get_vocab()
    text = dict(vocab_size=len(vocab), hidden_size=128, intermediate_size=512, num_hidden_layers=3,
                num_attention_heads=4, max_position_embeddings=CONTEXT, pad_token_id=vocab[EOS],
                bos_token_id=vocab[BOS], eos_token_id=vocab[EOS])
    vision = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=vision_layers, num_attention_heads=4,
                  image_size=SIZE, patch_size=8)
    return SiglipConfig(text_config=text, vision_config=vision)


def rn_model_cfg() -> dict:
    """open_clip's model_cfg: a ModifiedResNet (one bottleneck per stage, width 16) and a small text tower."""
    return {"embed_dim": 64,
            "vision_cfg": {"image_size": RN_IMAGE_SIZE, "layers": [1, 1, 1, 1], "width": 16, "head_width": 64},
            "text_cfg": {"context_length": CONTEXT, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 3}}


#: How a caption names an object: in full ("a red circle"), by its colour only ("a red") or by its
#: shape only ("a circle"), the prompt with the other word left out.
FULL, COLOUR_ONLY, SHAPE_ONLY = 0, 1, 2


def named_as(obj: ShapeObject, how: int) -> tuple[str | None, str | None]:
    """(colour, shape) a caption says of ``obj``; None for the word it leaves out."""
    return (None if how == SHAPE_ONLY else obj.colour, None if how == COLOUR_ONLY else obj.shape)


def partial_caption(said: list[tuple[str | None, str | None]]) -> str:
    """``caption`` for objects named in full or in part: 'a photo of a red, a circle and a blue square.'."""
    return caption_of([" ".join(w for w in pair if w) for pair in said])


def make_batch(rng: np.random.Generator, size: int, swap_share: float, max_named: int = 3, partial: float = 0.0):
    """(images (B, 64, 64, 3) uint8, captions, true (B, B) bool: everything caption j says is in image i),
    with swapped-colour copies as hard negatives; a caption names 1 to ``max_named`` of its scene's objects,
    and each named object, with probability ``partial``, by its colour or its shape only."""
    n_swapped = int(round(size * swap_share))
    scenes = [random_scene(rng) for _ in range(size - n_swapped)]
    images, captions, subsets, said, present = [], [], [], [], []
    for scene in scenes:
        n = len(scene.objects)
        subset = rng.choice(n, size=int(rng.integers(1, min(n, max_named) + 1)), replace=False)
        hows = [FULL if partial == 0 or rng.random() >= partial else int(rng.integers(1, 3)) for _ in subset]
        subsets.append(list(zip(subset, hows)))
        images.append(scene.image)
        said.append([named_as(scene.objects[i], how) for i, how in subsets[-1]])
        present.append(scene.objects)
    multi = [i for i, s in enumerate(scenes) if len(s.objects) > 1]
    for j in rng.choice(multi, size=n_swapped, replace=len(multi) < n_swapped):
        swapped = render(swap_colours(scenes[j].objects, rng), rng)
        images.append(swapped.image)
        said.append([named_as(swapped.objects[i], how) for i, how in subsets[j]])
        present.append(swapped.objects)

    def shows(objects, colour, shape) -> bool:
        return any(colour in (None, o.colour) and shape in (None, o.shape) for o in objects)

    captions = [partial_caption(s) for s in said]
    true = np.array([[all(shows(p, *pair) for pair in s) for s in said] for p in present])  # (B images, B captions)
    return np.stack(images), captions, true


class ClipRun:
    """transformers CLIPModel, CLIP's contrastive softmax loss. With ``positives="diagonal"`` (CLIP's
    own labels) each image's caption is its only positive; with ``"all"`` every caption true of an
    image is (soft targets spread evenly over them, both ways), which partial captions need: "a photo
    of a red." is true of many images in a batch."""

    def __init__(self, positives: str = "diagonal", vision_layers: int = 4):
        self.positives = positives
        self.tokenizer = word_tokenizer(VOCABULARY)
        self.processor = CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
        self.model = CLIPModel(shapes_config(self.tokenizer, vision_layers)).train()

    def loss(self, images: np.ndarray, captions: list[str], true: np.ndarray) -> torch.Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        tokens = self.tokenizer(captions, padding=True, return_tensors="pt")
        if self.positives == "diagonal":
            return self.model(pixel_values=pixels, **tokens, return_loss=True).loss
        logits = self.model(pixel_values=pixels, **tokens).logits_per_image  # (B images, B captions)
        target = torch.as_tensor(true, dtype=logits.dtype)
        return (F.cross_entropy(logits, target / target.sum(1, keepdim=True))
                + F.cross_entropy(logits.T, target.T / target.T.sum(1, keepdim=True))) / 2

    def save(self, out: Path) -> Callable:
        self.model.eval()
        self.model.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        self.processor.save_pretrained(out)
        return hf_embedders(self.model, self.tokenizer, self.processor, {"padding": True})


class SiglipRun:
    """transformers SiglipModel, SigLIP's sigmoid loss over every image-caption pair of the batch."""

    def __init__(self, max_named: int = 1, vision_layers: int = 1):
        from transformers import SiglipImageProcessor, SiglipModel, SiglipProcessor

        self.tokenizer = word_tokenizer(VOCABULARY, model_max_length=CONTEXT, model_input_names=["input_ids"])
        # squash to a square, no crop: the model sees the whole image (SigLIP's processor does this)
        image_processor = SiglipImageProcessor(size={"height": SIZE, "width": SIZE})
        self.processor = SiglipProcessor(image_processor=image_processor, tokenizer=self.tokenizer)
        self.model = SiglipModel(siglip_config(self.tokenizer, vision_layers)).train()
        with torch.no_grad():  # the paper's temperature; the bias at the prior log-odds (see siglip_bias)
            self.model.logit_scale.fill_(math.log(10.0))
            self.model.logit_bias.fill_(siglip_bias(max_named))

    def loss(self, images: np.ndarray, captions: list[str], true: np.ndarray) -> torch.Tensor:
        inputs = self.processor(text=captions, images=list(images), padding="max_length", truncation=True,
                                return_tensors="pt")
        logits = self.model(**inputs).logits_per_image  # (B images, B captions): t·cos + b
        signs = torch.from_numpy(true).float() * 2 - 1  # +1 for a true pair, -1 otherwise
        return -F.logsigmoid(signs * logits).sum(dim=1).mean()

    def save(self, out: Path) -> Callable:
        from transformers import AutoProcessor, SiglipModel

        self.model.eval()
        self.model.save_pretrained(out, safe_serialization=True)
        self.processor.save_pretrained(out)
        model = SiglipModel.from_pretrained(out).eval()  # evaluate what was saved, loaded as users load it
        processor = AutoProcessor.from_pretrained(out)
        return hf_embedders(model, processor.tokenizer, processor.image_processor, {"padding": "max_length"})


class ResNetRun:
    """open_clip CLIP with a ModifiedResNet image tower, CLIP's contrastive loss."""

    def __init__(self):
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.model_cfg = rn_model_cfg()
        self.preprocess_cfg = {**vars(PreprocessCfg(size=RN_IMAGE_SIZE)), "resize_mode": "shortest"}
        self.model = open_clip.CLIP(**self.model_cfg).train()
        self.transform = image_transform_v2(PreprocessCfg(**self.preprocess_cfg), is_train=False)
        self.tokenizer = open_clip.SimpleTokenizer(context_length=CONTEXT)

    def pixels(self, images: np.ndarray) -> torch.Tensor:
        from PIL import Image

        return torch.stack([self.transform(Image.fromarray(im)) for im in images])  # (B, 3, 128, 128)

    def loss(self, images: np.ndarray, captions: list[str], true: np.ndarray) -> torch.Tensor:
        img, txt, scale = self.model(self.pixels(images), self.tokenizer(captions))  # normalised features
        logits = scale * img @ txt.T  # (B, B)
        labels = torch.arange(len(captions))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def save(self, out: Path) -> Callable:
        import open_clip
        from safetensors.torch import save_file

        self.model.eval()
        out.mkdir(parents=True, exist_ok=True)
        config = {"model_cfg": self.model_cfg, "preprocess_cfg": self.preprocess_cfg}
        (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(out / "open_clip_model.safetensors"))
        # evaluate what was saved, loaded the way open_clip users load a local directory
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
        model.eval()

        def text(prompts):
            return F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)

        def image(im):
            from PIL import Image

            return F.normalize(model.encode_image(preprocess(Image.fromarray(im))[None]), dim=-1)[0]
        return text, image


def hf_embedders(model, tokenizer, image_processor, padding: dict) -> tuple[Callable, Callable]:
    """Normalised text and image embeddings of a transformers CLIP or SigLIP model."""
    def text(prompts):
        tokens = tokenizer(prompts, return_tensors="pt", **padding)
        return F.normalize(model.get_text_features(**tokens).pooler_output, dim=-1)

    def image(im):
        pixels = image_processor(images=im, return_tensors="pt")["pixel_values"]
        return F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)[0]
    return text, image


def evaluate(text_features: Callable, image_features: Callable, seed: int = 99, n: int = 300) -> dict:
    """Zero-shot accuracy (top prompt names an object in the scene) and colour–shape binding
    (the true 'colour shape' beats the same shape with another present object's colour) on n
    held-out scenes (their seed is not the training seed)."""
    rng = np.random.default_rng(seed)
    all_objects = [ShapeObject(s, c, (0, 0), 0) for c in COLOURS for s in SHAPES]
    prompts = [object_prompt(o) for o in all_objects]
    hits = binding_hits = binding_total = 0
    with torch.no_grad():
        text = text_features(prompts)  # (P, D)
        for _ in range(n):
            scene = random_scene(rng)
            sims = text @ image_features(scene.image)  # (P,)
            present = {o.name for o in scene.objects}
            hits += all_objects[int(sims.argmax())].name in present
            for a in scene.objects:
                for b in scene.objects:
                    wrong = f"{b.colour} {a.shape}"
                    if a is b or wrong in present:
                        continue
                    ia = prompts.index(object_prompt(a))
                    ib = prompts.index(f"a photo of a {wrong}.")
                    binding_hits += bool(sims[ia] > sims[ib])
                    binding_total += 1
    return {"zero_shot": hits / n, "binding": binding_hits / max(1, binding_total)}


def optimizer(model: torch.nn.Module, family: str, lr: float) -> torch.optim.Optimizer:
    """AdamW; for the new families without weight decay on the temperature, bias, norms and biases
    (as open_clip trains). The CLIP keeps its original recipe, so its weights stay reproducible."""
    if family == "clip":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    named = list(model.named_parameters())
    decay = [p for n, p in named if p.ndim >= 2 and "logit" not in n]
    rest = [p for n, p in named if p.ndim < 2 and "logit" not in n]
    # SigLIP's temperature and bias: each one scalar that Adam moves by about lr a step, too slow for
    # a run this short at the shared lr; the ResNet CLIP keeps the shared lr it was trained with
    scale = [p for n, p in named if "logit" in n]
    factor = LOGIT_LR_FACTOR if family == "siglip" else 1.0
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0},
                              {"params": scale, "weight_decay": 0.0, "lr": lr * factor}], lr=lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=FAMILIES, default="clip")
    parser.add_argument("--steps", type=int, help="default: clip 1800, siglip 1800, rn 1000")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--swap-share", type=float, default=0.3)
    parser.add_argument("--max-named", type=int, help="a caption names 1 to this many objects (default: siglip 1, else 3)")
    parser.add_argument("--partial", type=float,
                        help="share of named objects a caption names by colour or shape only (default: clip 0.25, else 0)")
    parser.add_argument("--positives", choices=("diagonal", "all"),
                        help="the CLIP loss's positives: its own caption only, or every caption true of the image "
                             "(default: all; clip only: the SigLIP's sigmoid loss always takes every true pair, "
                             "the ResNet CLIP's loss its own caption)")
    parser.add_argument("--clip-grad", type=float, help="gradient norm clipping, 0 for none (default: siglip 0, else 1)")
    parser.add_argument("--vision-layers", type=int, help="the ViT image tower's layers (default: clip 4, siglip 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="default: clipcam/assets/shapes-clip, shapes-siglip or shapes-rn")
    args = parser.parse_args()
    for key, value in FAMILIES[args.family].items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    if args.family == "siglip":
        run = SiglipRun(args.max_named, args.vision_layers)
    else:
        run = ClipRun(args.positives, args.vision_layers) if args.family == "clip" else ResNetRun()
    model = run.model
    n_params = sum(p.numel() for p in model.parameters())
    opt = optimizer(model, args.family, args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / args.steps))))
    start = time.time()
    print(f"training a {args.family} of {n_params / 1e6:.2f} M parameters for {args.steps} steps", flush=True)
    for step in range(1, args.steps + 1):
        images, captions, true = make_batch(rng, args.batch, args.swap_share, args.max_named, args.partial)
        loss = run.loss(images, captions, true)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
        opt.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps:
            print(f"step {step:5d}  loss {loss.item():.3f}  lr {schedule.get_last_lr()[0]:.2e}  "
                  f"{time.time() - start:.0f} s", flush=True)
    seconds = round(time.time() - start)
    if args.family == "clip":  # the CLIP's record has always measured the model before saving
        metrics = evaluate(*hf_embedders(model.eval(), run.tokenizer, run.processor, {"padding": True}))
        run.save(args.out)
    else:
        metrics = evaluate(*run.save(args.out))
    print(f"zero-shot {metrics['zero_shot']:.3f}  binding {metrics['binding']:.3f}", flush=True)
    record = {**vars(args), "out": str(args.out.relative_to(ROOT)) if args.out.is_relative_to(ROOT) else str(args.out),
              "parameters": n_params, "final_loss": loss.item(), "seconds": seconds,
              "torch": torch.__version__, **metrics}
    if args.family == "siglip":
        record.update(logit_scale=model.logit_scale.exp().item(), logit_bias=model.logit_bias.item())
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

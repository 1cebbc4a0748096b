"""Train the shapes-world CLIP shipped in assets/shapes-clip (a ~1.4 M-parameter CLIPModel).

    python tools/train_shapes.py                       # reproduces the shipped weights (seed 0)
    python tools/train_shapes.py --steps 200 --out /tmp/shapes-try   # a quick try

Scenes come from clipcam.eval.shapes. Captions name a random subset of a scene's objects in random
order ("a photo of a red circle and a blue square."), and about 30 % of each batch are copies of
other scenes in it with the colours swapped between the shapes, captioned the same way — hard
negatives that make the model bind colour to shape and look at the object it names instead of
learning one "an image with objects" direction. CLIP's own contrastive loss, AdamW with warm-up
and cosine decay. Training is not part of the tests or CI; using the shipped model is.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clipcam.eval.shapes import (  # noqa: E402
    COLOURS, SHAPES, SIZE, VOCABULARY, ShapeObject, caption, object_prompt, random_scene, render, swap_colours,
)
from clipcam.testing import BOS, EOS, word_tokenizer  # noqa: E402


def shapes_config(tokenizer) -> CLIPConfig:
    vocab = tokenizer.get_vocab()
    ids = dict(bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS])
    text = dict(vocab_size=len(vocab), hidden_size=128, intermediate_size=512, num_hidden_layers=3,
                num_attention_heads=4, max_position_embeddings=32, **ids)
    vision = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                  image_size=SIZE, patch_size=8)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=64)


def make_batch(rng: np.random.Generator, size: int, swap_share: float):
    """(images (B, 64, 64, 3) uint8, captions) with swapped-colour copies as hard negatives."""
    n_swapped = int(round(size * swap_share))
    scenes = [random_scene(rng) for _ in range(size - n_swapped)]
    images, captions, subsets = [], [], []
    for scene in scenes:
        n = len(scene.objects)
        subset = rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False)
        images.append(scene.image)
        captions.append(caption([scene.objects[i] for i in subset]))
        subsets.append(subset)
    multi = [i for i, s in enumerate(scenes) if len(s.objects) > 1]
    for j in rng.choice(multi, size=n_swapped, replace=len(multi) < n_swapped):
        swapped = render(swap_colours(scenes[j].objects, rng), rng)
        images.append(swapped.image)
        captions.append(caption([swapped.objects[i] for i in subsets[j]]))
    return np.stack(images), captions


def evaluate(model, tokenizer, processor, seed: int = 99, n: int = 300) -> dict:
    """Zero-shot accuracy (top prompt names an object in the scene) and colour–shape binding
    (the true 'colour shape' beats the same shape with another present object's colour)."""
    rng = np.random.default_rng(seed)
    all_objects = [ShapeObject(s, c, (0, 0), 0) for c in COLOURS for s in SHAPES]
    prompts = [object_prompt(o) for o in all_objects]
    tokens = tokenizer(prompts, padding=True, return_tensors="pt")
    hits = binding_hits = binding_total = 0
    model.eval()
    with torch.no_grad():
        text = model.get_text_features(**tokens).pooler_output
        text = text / text.norm(dim=-1, keepdim=True)
        for _ in range(n):
            scene = random_scene(rng)
            pixels = processor(images=scene.image, return_tensors="pt")["pixel_values"]
            img = model.get_image_features(pixel_values=pixels).pooler_output
            sims = (img / img.norm(dim=-1, keepdim=True) @ text.T)[0]
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
    model.train()
    return {"zero_shot": hits / n, "binding": binding_hits / max(1, binding_total)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--swap-share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "shapes-clip")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    tokenizer = word_tokenizer(VOCABULARY)
    processor = CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    model = CLIPModel(shapes_config(tokenizer)).train()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / args.steps))))
    start = time.time()
    print(f"training {n_params / 1e6:.2f} M parameters for {args.steps} steps", flush=True)
    for step in range(1, args.steps + 1):
        images, captions = make_batch(rng, args.batch, args.swap_share)
        pixels = processor(images=list(images), return_tensors="pt")["pixel_values"]
        tokens = tokenizer(captions, padding=True, return_tensors="pt")
        loss = model(pixel_values=pixels, **tokens, return_loss=True).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps:
            print(f"step {step:5d}  loss {loss.item():.3f}  lr {schedule.get_last_lr()[0]:.2e}  "
                  f"{time.time() - start:.0f} s", flush=True)
    metrics = evaluate(model, tokenizer, processor)
    print(f"zero-shot {metrics['zero_shot']:.3f}  binding {metrics['binding']:.3f}", flush=True)
    model.eval()
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    record = {**vars(args), "out": str(args.out.relative_to(ROOT)) if args.out.is_relative_to(ROOT) else str(args.out),
              "parameters": n_params, "final_loss": loss.item(), "seconds": round(time.time() - start),
              "torch": torch.__version__, **metrics}
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

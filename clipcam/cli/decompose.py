"""``python -m clipcam decompose IMAGE --prompt TEXT [--prompt TEXT ...] --out DIR``: split each
prompt's logit exactly into the embedding, every layer's heads and MLPs (clipcam.decompose).

Writes heads.csv (prompt, layer, head, contribution, class_token), mlps.csv (prompt, layer,
contribution), terms.csv (prompt, embed, heads, mlps, total), heads.npz (the arrays, head_maps
included) and one picture of the L×H grid per prompt (NN-prompt-heads.png) to DIR.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from ..decompose import Decomposition
from ..decompose.render import heads_image
from ..explainer import load_explainer
from .common import SentenceParser, add_model_options, precision_of, quiet_transformers, refused
from .explain import slug


def build_parser() -> argparse.ArgumentParser:
    parser = SentenceParser(
        prog="python -m clipcam decompose",
        description="Split each prompt's score (the model's logit) exactly into the embedding term, each layer's "
        "attention heads (per patch too) and MLPs, from one forward pass (Gandelsman et al., ICLR 2024). CLIP and "
        "open_clip ViTs split every block; SigLIP, SigLIP 2 and open_clip ResNets split their attention-pooling head.",
    )
    parser.add_argument("image", help="image file (PNG, JPEG, WebP, GIF, BMP or TIFF)")
    parser.add_argument("-p", "--prompt", action="append", required=True, metavar="TEXT",
                        help="a text prompt; repeat for several")
    parser.add_argument("-o", "--out", required=True, type=Path, help="output directory (created if needed)")
    add_model_options(parser, "base")
    return parser


def write_tables(result: Decomposition, out: Path) -> None:
    """heads.csv, mlps.csv, terms.csv and heads.npz of ``result`` in ``out``."""
    layers, heads = result.heads.shape[1:]
    with open(out / "heads.csv", "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["prompt", "layer", "head", "contribution", "class_token"])
        for k, prompt in enumerate(result.prompts):
            for li in range(layers):
                for h in range(heads):
                    rows.writerow([prompt, result.layer_names[li], h + 1, f"{result.heads[k, li, h]:.6g}",
                                   f"{result.head_cls[k, li, h]:.6g}"])
    with open(out / "mlps.csv", "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["prompt", "layer", "contribution"])
        for k, prompt in enumerate(result.prompts):
            rows.writerows([prompt, result.layer_names[li], f"{result.mlps[k, li]:.6g}"] for li in range(layers))
    with open(out / "terms.csv", "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["prompt", "embed", "heads", "mlps", "total"])
        for k, prompt in enumerate(result.prompts):
            rows.writerow([prompt] + [f"{v:.6g}" for v in (result.embed[k], result.heads[k].sum(),
                                                           result.mlps[k].sum(), result.total[k])])
    np.savez_compressed(out / "heads.npz", heads=result.heads, head_maps=result.head_maps, head_cls=result.head_cls,
                        mlps=result.mlps, embed=result.embed, total=result.total)


def run(argv: Sequence[str]) -> int:
    """Decompose one image's scores into a folder; one sentence and status 2 on bad input."""
    args = build_parser().parse_args(argv)
    quiet_transformers()
    try:
        explainer = load_explainer(args.model, device=args.device, precision=precision_of(args))
        result = explainer.decompose(args.image, args.prompt)
        args.out.mkdir(parents=True, exist_ok=True)
        write_tables(result, args.out)
        for k, prompt in enumerate(result.prompts):
            heads_image(result, k).save(args.out / f"{slug(prompt, k)}-heads.png")
    except (ValueError, OSError) as err:
        return refused("clipcam", err)
    for k, prompt in enumerate(result.prompts):
        top = np.unravel_index(np.argmax(result.heads[k]), result.heads[k].shape)
        print(f"{result.total[k]:8.3f}  {prompt}  (top head: layer {result.layer_names[top[0]]}, head {top[1] + 1})")
    print(f"wrote {args.out}/")
    return 0


#: What this module registers in clipcam.cli.COMMANDS.
COMMAND = ("decompose", run)

"""Word relevance (clipcam.words): quality with ground truth on shapes world, and what it costs.

    python benchmarks/words.py quality                 # 300 scenes, writes benchmarks/results/words_quality.json
    python benchmarks/words.py quality --scenes 40     # a quick look
    python benchmarks/words.py speed --arch base       # explain() with words off and with each word method,
                                                       # writes benchmarks/results/words_speed-cpu.json

Quality. For each object of the fixed, seeded evaluation scenes (clipcam.eval.shapes), two
one-wrong-word prompts: the colour changed to one that no object of that shape has in the scene
("a photo of a blue circle." for a red circle), and the shape changed ("a photo of a red square.").
A method finds the wrong word when its pick is that word. The pick: for a signed method, the word
with the most negative relevance on the prompt's logit; for a non-negative method, the word with
the largest counterfactual relevance (the same method explaining −logit, Selvaraju et al. 2017),
and, for comparison, its least relevant word. Baselines: a random word (expected rate: the mean of
1 / number of words), and leave-one-word-out occlusion (the word whose removal raises the logit
most: slow, one forward per word). Word deletion, for the correct prompts ("a photo of a red
circle."): words are removed from the prompt most relevant first, and the drop of the logit is
recorded after each removal; a method whose order makes the logit fall faster ranks the words
better (area: mean drop over the removals before the last; higher is better), against a random
order (mean of 5) and the occlusion order.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

import numpy as np
import torch
from PIL import Image

from benchmarks._common import PROMPTS, RESULTS, photo, random_model, timed
from clipcam import load_explainer
from clipcam.eval.shapes import COLOURS, SHAPES, Scene, evaluation_set
from clipcam.words import WORD_METHODS, WORD_REGISTRY
from clipcam.words.text_pass import word_relevance


def logits_for(ex, image: torch.Tensor, texts: list[str]) -> np.ndarray:
    """The model's logits (N,) of one image embedding (1, P) against N texts (batched, no gradients)."""
    adapter = ex.adapter
    out = []
    with torch.no_grad():
        for at in range(0, len(texts), 64):
            emb = adapter.encode_text(texts[at:at + 64])
            emb = emb / emb.norm(dim=-1, keepdim=True)
            out.append(adapter.logits(image, emb)[0].float().cpu().numpy())
    return np.concatenate(out)


def scene_prompts(scene: Scene, rng: np.random.Generator) -> tuple[list[str], list[tuple[str, int, str]]]:
    """The scene's correct object prompts, and its one-wrong-word prompts as (prompt, the wrong
    word's index in "a photo of a COLOUR SHAPE .", kind). Only unambiguous errors: the wrong colour
    is one that no object in the scene has, the wrong shape one that no object has (otherwise
    "a photo of a red circle." beside a red triangle and a blue circle could be either word's fault)."""
    colours_here = {o.colour for o in scene.objects}
    shapes_here = {o.shape for o in scene.objects}
    correct, wrong = [], []
    for obj in scene.objects:
        correct.append(f"a photo of a {obj.colour} {obj.shape}.")
        colours = [c for c in COLOURS if c not in colours_here]
        wrong.append((f"a photo of a {rng.choice(colours)} {obj.shape}.", 4, "colour"))
        shapes = [s for s in SHAPES if s not in shapes_here]
        if shapes:
            wrong.append((f"a photo of a {obj.colour} {rng.choice(shapes)}.", 5, "shape"))
    return correct, wrong


def without(words: tuple[str, ...], drop: set[int]) -> str:
    return " ".join(w for i, w in enumerate(words) if i not in drop)


def deletion_drops(ex, image, words: tuple[str, ...], order: list[int], full: float) -> np.ndarray:
    """Logit drops (n - 1,) after removing the first 1 .. n-1 words of ``order``."""
    texts = [without(words, set(order[:n])) for n in range(1, len(words))]
    return full - logits_for(ex, image, texts)


def quality(args) -> dict:
    ex = load_explainer(args.model, device="cpu")
    rng = np.random.default_rng(7)
    scenes = evaluation_set(args.scenes)
    layers = ex.adapter.text_num_layers
    # (method, start layer) settings: the authors' default start and every other start layer
    settings = [(m, None) for m in WORD_METHODS] + [  # the authors' start layers, and the other end
        (m, s) for m in WORD_METHODS if WORD_REGISTRY[m].reads == "attention" for s in (1, layers)
        if s != WORD_REGISTRY[m].default_layer(layers)]
    found: dict[str, list[tuple[str, bool]]] = {}
    drops: dict[str, list[np.ndarray]] = {}
    random_expected, n_words = [], None

    def tally(name, kind, hit):
        found.setdefault(name, []).append((kind, bool(hit)))

    start = time.perf_counter()
    for scene in scenes:
        pixels = ex.adapter.preprocess(Image.fromarray(scene.image))
        with torch.no_grad():
            image = ex.adapter.image_features(pixels)  # (1, P), shared by every call on this scene
        correct, wrong = scene_prompts(scene, rng)
        wrong_texts = [w[0] for w in wrong]
        for method, layer in settings:
            name = f"{method}" + ("" if layer is None else f"@{layer}")
            plain = word_relevance(ex.adapter, pixels, wrong_texts, "logit", method, layer, image=image)
            record = WORD_REGISTRY[method]
            counter = None if record.signed else word_relevance(ex.adapter, pixels, wrong_texts, "logit", method,
                                                                layer, counterfactual=True, image=image)
            for i, (_, index, kind) in enumerate(wrong):
                words = plain[i]
                assert len(words.words) == 7, words.words
                if record.signed:
                    tally(name, kind, int(np.argmin(words.word_relevance)) == index)
                else:
                    tally(name + " counterfactual", kind, int(np.argmax(counter[i].word_relevance)) == index)
                    tally(name + " least relevant", kind, int(np.argmin(words.word_relevance)) == index)
            if layer is None:  # deletion curves for the authors' settings
                rel = word_relevance(ex.adapter, pixels, correct, "logit", method, image=image)
                full = logits_for(ex, image, correct)
                for i, p in enumerate(rel.prompts):
                    order = [int(j) for j in np.argsort(-p.word_relevance, kind="stable")]
                    drops.setdefault(method, []).append(deletion_drops(ex, image, p.words, order, full[i]))
        # baselines: occlusion (one forward per word) and a random word / order
        for text, index, kind in wrong:
            words = text[:-1].split() + ["."]
            base = logits_for(ex, image, [text])[0]
            rises = logits_for(ex, image, [without(tuple(words), {j}) for j in range(len(words))]) - base
            tally("occlusion (leave one word out)", kind, int(np.argmax(rises)) == index)
            random_expected.append((kind, 1.0 / len(words)))
        full = logits_for(ex, image, correct)
        for i, text in enumerate(correct):
            words = tuple(text[:-1].split() + ["."])
            n_words = len(words)
            falls = full[i] - logits_for(ex, image, [without(words, {j}) for j in range(len(words))])
            drops.setdefault("occlusion order", []).append(
                deletion_drops(ex, image, words, [int(j) for j in np.argsort(-falls, kind="stable")], full[i]))
            randoms = [deletion_drops(ex, image, words, list(rng.permutation(len(words))), full[i]) for _ in range(5)]
            drops.setdefault("random order", []).append(np.mean(randoms, axis=0))

    def rate(rows, kind=None):
        picked = [hit for k, hit in rows if kind is None or k == kind]
        return float(np.mean(picked)), len(picked)

    localisation = {name: {"all": rate(rows)[0], "colour": rate(rows, "colour")[0], "shape": rate(rows, "shape")[0],
                           "n": rate(rows)[1]} for name, rows in found.items()}
    localisation["random word (expected)"] = {
        "all": float(np.mean([v for _, v in random_expected])),
        "colour": float(np.mean([v for k, v in random_expected if k == "colour"])),
        "shape": float(np.mean([v for k, v in random_expected if k == "shape"])), "n": len(random_expected)}
    deletion = {name: {"curve": np.mean(rows, axis=0).round(4).tolist(), "area": float(np.mean(rows)), "n": len(rows)}
                for name, rows in drops.items()}
    return {"model": args.model, "scenes": args.scenes, "text_layers": layers, "words_per_prompt": n_words,
            "seconds": round(time.perf_counter() - start, 1), "localisation": localisation, "deletion": deletion}


def quality_table(res: dict) -> str:
    lines = ["| method (text start layer) | pick | wrong colour word | wrong shape word | all | prompts |",
             "|---|---|---|---|---|---|"]
    for name, row in sorted(res["localisation"].items(), key=lambda kv: -kv[1]["all"]):
        signed = name in WORD_REGISTRY and WORD_REGISTRY[name].signed
        pick = ("most negative" if signed else "largest −logit relevance" if "counterfactual" in name
                else "least relevant" if "least" in name else "largest rise when removed" if "occlusion" in name
                else "uniform")
        label = name.replace(" counterfactual", "").replace(" least relevant", "")
        lines.append(f"| {label} | {pick} | {100 * row['colour']:.1f} % | {100 * row['shape']:.1f} % | "
                     f"**{100 * row['all']:.1f} %** | {row['n']} |")
    lines += ["", "| deletion order | logit drop after 1, 2, … removals | area (mean drop) | prompts |", "|---|---|---|---|"]
    for name, row in sorted(res["deletion"].items(), key=lambda kv: -kv[1]["area"]):
        lines.append(f"| {name} | {', '.join(f'{x:.2f}' for x in row['curve'])} | **{row['area']:.2f}** | {row['n']} |")
    return "\n".join(lines)


def speed(args) -> dict:
    """explain() with words off and with each word method, for Grad-CAM and Chefer: every repeat kept."""
    ex = load_explainer(random_model(args.arch, Path(args.cache) / args.arch), device="cpu")
    img, prompts = photo(), PROMPTS[:args.k]
    n = ex.num_layers
    rows = []
    for method in ("gradcam", "chefer"):
        for words in (None, *WORD_METHODS):
            fn = lambda method=method, words=words: ex.explain(img, prompts, layer=n - 1, method=method,  # noqa: E731
                                                               words=words)
            times = timed(fn, args.repeats, warmup=1)  # warm-up: first-call allocations and the text cache
            rows.append({"arch": args.arch, "k": args.k, "method": method, "words": words or "off",
                         "median_s": statistics.median(times), "min_s": min(times), "times_s": times})
            print(json.dumps(rows[-1]), flush=True)
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(["python"] + sys.argv)}
    return {"meta": meta, "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--model", default="shapes")
    q.add_argument("--scenes", type=int, default=300)
    q.add_argument("--out", type=Path, default=RESULTS / "words_quality.json")
    s = sub.add_parser("speed")
    s.add_argument("--arch", default="base", choices=["base", "large"])
    s.add_argument("--k", type=int, default=8)
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--cache", default="/tmp/clipcam-speed-models")
    s.add_argument("--out", type=Path, default=RESULTS / "words_speed-cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.what == "quality":
        res = quality(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
        print(quality_table(res))
        print(f"\n{res['scenes']} scenes, {res['seconds']} s")
    else:
        res = speed(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()

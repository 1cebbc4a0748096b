"""``python -m clipcam heads``: the images' per-head terms, collected in the process or on Ray,
then TextSpan (clipcam.decompose.textspan) over the last layers, written as Parquet, Markdown and
the JSON heads file the app reads.

The classes of the zero-shot accuracy are the prompts the items name, in the order first named;
an image's own prompts are its right answers (a shapes scene names each of its objects). A
folder whose images all share the same prompts has no accuracy (every answer would be right).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..decompose import decompose_reason, residual_terms, split_layers
from ..decompose.textspan import HEADS_FILE, HeadScores, HeadsReport, build_report, report_json, report_markdown
from ..explainer import Explainer, load_explainer
from .batch import Item, open_image, require_pyarrow
from .engine import CHUNK

#: Texts embedded per call of the text tower.
TEXT_CHUNK = 256


@dataclass(frozen=True)
class HeadsSettings:
    """What a run is made with: the model, how many last layers are labelled, texts per head, the
    rank of the span the texts are projected onto, and where the model runs."""

    model: str = "base"
    last: int = 4
    per_head: int = 5
    rank: int = 80
    device: str = "cpu"
    precision: str = "fp32"  # clipcam.precision: what load_explainer takes


def read_texts(path: str | Path) -> list[str]:
    """The text bank: one text a line; blank lines and lines starting with '#' are skipped, repeats kept once."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"Cannot read the text bank '{path}'; give a UTF-8 text file with one text a line.") from err
    texts = list(dict.fromkeys(t.strip() for t in lines if t.strip() and not t.strip().startswith("#")))
    if len(texts) < 2:
        raise ValueError(f"The text bank '{path}' holds {len(texts)} texts; give at least 2, one a line.")
    return texts


def class_labels(items: Sequence[Item]) -> tuple[tuple[str, ...], np.ndarray]:
    """The classes (every prompt the items name, first-named order) and labels (N, C) bool."""
    classes = tuple(dict.fromkeys(p for item in items for p in item.prompts))
    index = {p: c for c, p in enumerate(classes)}
    labels = np.zeros((len(items), len(classes)), bool)
    for i, item in enumerate(items):
        labels[i, [index[p] for p in item.prompts]] = True
    return classes, labels


def embed_texts(explainer: Explainer, texts: Sequence[str]) -> np.ndarray:
    """Unit text embeddings (T, E) of the model's text tower, a chunk at a time."""
    out = [explainer.text_embeddings(texts[i:i + TEXT_CHUNK])[0].float().cpu().numpy()
           for i in range(0, len(texts), TEXT_CHUNK)]
    return np.concatenate(out)


def item_terms(explainer: Explainer, items: Sequence[Item], classifier: np.ndarray, last: int) -> dict[str, np.ndarray]:
    """The terms of a chunk of images, each divided by its image embedding's norm (as the authors'
    PRS logger): their scores against the classes, ``embed`` (B, C), ``heads`` (B, L, H, C),
    ``mlps`` (B, L, C), and the last ``last`` layers' head terms themselves (B, last, H, E); ``ok``
    (B,) false for an image that could not be read (its rows are zeros)."""
    adapter = explainer.adapter
    pixels, ok = [], []
    for item in items:
        try:
            pixels.append(explainer.prepare_image(open_image(item))[1])
            ok.append(True)
        except ValueError:
            ok.append(False)
    if not pixels:
        raise ValueError("None of the images could be read; give PNG, JPEG or WebP files.")
    # one forward for the chunk, or one per image where the input is not one tensor (SigLIP 2 NaFlex's patches)
    batches = [torch.cat(pixels)] if all(isinstance(p, torch.Tensor) for p in pixels) else pixels
    with torch.inference_mode():
        found = [residual_terms(adapter, b) for b in batches]
        embed, heads, mlps, features = (torch.cat([getattr(t, k) for t in found]).float().cpu().numpy()
                                        for k in ("embed", "heads", "mlps", "features"))
    norm = np.linalg.norm(features, axis=-1)  # (B,): the embedding's own norm, which the terms sum to
    embed, heads, mlps = embed / norm[:, None], heads / norm[:, None, None, None], mlps / norm[:, None, None]
    got = {"embed": embed @ classifier.T, "heads": heads @ classifier.T, "mlps": mlps @ classifier.T,
           "last": heads[:, heads.shape[1] - last:]}
    full = {k: np.zeros((len(items),) + v.shape[1:], np.float32) for k, v in got.items()}
    for k, v in got.items():
        full[k][np.asarray(ok)] = v
    return {**full, "ok": np.asarray(ok)}


def stack(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Chunks' terms concatenated along the images."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def collect_in_process(explainer: Explainer, items: Sequence[Item], classifier: np.ndarray, last: int,
                       chunk: int = CHUNK) -> dict[str, np.ndarray]:
    """Every item's terms, ``chunk`` images per forward."""
    return stack([item_terms(explainer, items[i:i + chunk], classifier, last) for i in range(0, len(items), chunk)])


class TermsActor:
    """A Ray actor's callable: one explainer per worker; a batch of items (index, id, path or
    data, prompts) becomes their terms, keyed by the items' index so the driver can order them."""

    def __init__(self, settings: dict, classifier: np.ndarray) -> None:
        self.settings = HeadsSettings(**settings)
        self.classifier = classifier
        self.explainer = load_explainer(self.settings.model, device=self.settings.device, precision=self.settings.precision)

    def __call__(self, batch: dict) -> dict:
        items = [Item(str(i), d if d is not None and len(d) else p, (), str(p))
                 for i, p, d in zip(batch["id"], batch["path"], batch["data"])]
        return {"index": batch["index"], **item_terms(self.explainer, items, self.classifier, self.settings.last)}


def collect_ray(items: Sequence[Item], settings: HeadsSettings, classifier: np.ndarray, address: str = "auto",
                workers: int | None = None, batch_size: int = CHUNK) -> dict[str, np.ndarray]:
    """Every item's terms from a pool of Ray actors; a cluster this call starts is shut down after."""
    try:
        import ray  # an optional extra (clipcam[scale]): a clear error where it is missing
    except ImportError as err:
        raise ValueError("--ray needs Ray: pip install 'clipcam[scale]'.") from err
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "auto" else address, include_dashboard=False, log_to_driver=False)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0)) if settings.device != "cpu" else 0
        workers = workers or gpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
        ray.data.DataContext.get_current().enable_progress_bars = False
        records = [{"index": i, "id": it.id, "path": None if isinstance(it.image, bytes) else it.image,
                    "data": it.image if isinstance(it.image, bytes) else b""} for i, it in enumerate(items)]
        ds = ray.data.from_items(records, override_num_blocks=max(1, -(-len(records) // batch_size)))
        ds = ds.map_batches(TermsActor, fn_constructor_kwargs={"settings": asdict(settings), "classifier": classifier},
                            batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                            num_gpus=1 if gpus else 0, num_cpus=1)
        got = stack(list(ds.iter_batches(batch_format="numpy", batch_size=None)))
    finally:
        if started:
            ray.shutdown()
    order = np.argsort(got.pop("index"))
    return {k: v[order] for k, v in got.items()}


def run_heads(items: Sequence[Item], texts: Sequence[str], settings: HeadsSettings, out: Path,
              ray_address: str | None = None, workers: int | None = None, chunk: int = CHUNK,
              explainer: Explainer | None = None) -> HeadsReport:
    """TextSpan over the items' last layers: writes heads.parquet, heads.md and heads.json to ``out``."""
    pa = require_pyarrow()
    explainer = explainer or load_explainer(settings.model, device=settings.device, precision=settings.precision)
    reason = decompose_reason(explainer.adapter)
    if reason is not None:
        raise ValueError(reason)
    split = split_layers(explainer.adapter)  # a SigLIP's or ResNet's only split layer is its attention pool
    if settings.last < 1:
        raise ValueError(f"--last must be at least 1; got {settings.last}.")
    settings = replace(settings, last=min(settings.last, split))
    classes, labels = class_labels(items)
    classifier = embed_texts(explainer, classes)  # (C, E)
    bank = embed_texts(explainer, texts)  # (T, E)
    if ray_address is None:
        got = collect_in_process(explainer, items, classifier, settings.last, chunk)
    else:
        got = collect_ray(items, settings, classifier, ray_address, workers, chunk)
    ok = got["ok"].astype(bool)
    if not ok.any():
        raise ValueError("None of the images could be read; give PNG, JPEG or WebP files.")
    scores = HeadScores(got["embed"][ok], got["heads"][ok], got["mlps"][ok], labels[ok])
    report = build_report(settings.model, scores, got["last"][ok], classifier, bank, texts, settings.per_head,
                          settings.rank, with_accuracy=not labels[ok].all())
    write_report(report, out, pa)
    return report


def write_report(report: HeadsReport, out: Path, pa) -> None:
    """heads.parquet (one row per head), heads.md and the heads file, each written atomically."""
    import pyarrow.parquet as pq  # an optional extra (clipcam[scale]), checked by require_pyarrow

    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{**asdict(r), "model": report.model} for r in report.rows])
    pq.write_table(table, out / ".heads.parquet.tmp")
    os.replace(out / ".heads.parquet.tmp", out / "heads.parquet")
    for name, text in (("heads.md", report_markdown(report)), (HEADS_FILE, report_json(report))):
        (out / f".{name}.tmp").write_text(text, encoding="utf-8")
        os.replace(out / f".{name}.tmp", out / name)

"""TextSpan: label each attention head of a ViT CLIP with the text directions its output spans.

Gandelsman, Efros & Steinhardt, "Interpreting CLIP's Image Representation via Text-Based
Decomposition" (ICLR 2024; code: github.com/yossigandelsman/clip_text_span). The image embedding
is an exact sum of one term per head, per MLP and for the embeddings (clipcam.decompose). Over a
set of images, each head's terms (N, E) vary along a few directions; TextSpan picks, greedily,
the texts of a bank whose embeddings explain most of that variance, removing each chosen
direction from the data and from the remaining texts before the next pick
(``replace_with_iterative_removal`` of the authors' ``compute_complete_text_set.py``, ported
exactly). Mean-ablation (``compute_ablations.py``) replaces terms by their mean over the images
and re-scores zero-shot classification: how much of the accuracy a head, or the MLPs, carry.

Plain numpy: the model-side collection of the terms lives with the command (clipcam.eval.heads).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

#: The authors' defaults: text directions per head, the rank of the span the texts are projected
#: onto (their ``--w_ov_rank``), and how many of the last layers are labelled (their
#: ``--num_of_last_layers`` for ViT-L/H is 4 in the paper's tables).
TEXTS_PER_HEAD = 5
SPAN_RANK = 80
LAST_LAYERS = 4
#: The file a model's directory holds its TextSpan labels in (written by ``clipcam heads``).
HEADS_FILE = "heads.json"


@dataclass(frozen=True)
class Span:
    """What TextSpan found for one head: the chosen texts (bank indices and strings), the share
    of the head's variance over the images each one explains (in pick order; their sum is the
    share the whole span explains), and the reconstruction (N, E): the mean plus the projections."""

    indices: tuple[int, ...]
    texts: tuple[str, ...]
    explained: tuple[float, ...]
    reconstruct: np.ndarray = field(repr=False)


def text_span(data: np.ndarray, text_features: np.ndarray, texts: Sequence[str], iters: int = TEXTS_PER_HEAD,
              rank: int = SPAN_RANK) -> Span:
    """The authors' ``replace_with_iterative_removal`` for one head's terms ``data`` (N, E) and a
    text bank's embeddings ``text_features`` (T, E): the texts are first projected onto the span
    of the data's top ``rank`` right singular vectors; then ``iters`` times the text whose
    projection of the centred data has the largest standard deviation is picked, and its
    direction is removed from the data and from every text.

    Also returns each pick's share of the centred data's variance (the authors print only the
    texts): ||data_i @ t / |t| ||² / ||data_0||², data_i being what is left before pick i.
    """
    data = np.asarray(data, dtype=np.float64)
    if len(texts) != len(text_features):
        raise ValueError(f"The text bank has {len(texts)} texts but {len(text_features)} embeddings.")
    _, _, vh = np.linalg.svd(data, full_matrices=False)
    vh = vh[:rank]  # (r, E), orthonormal rows
    feats = (vh.T @ np.linalg.inv(vh @ vh.T) @ vh @ np.asarray(text_features, np.float64).T).T  # (T, E)
    mean = data.mean(axis=0, keepdims=True)  # (1, E)
    data = data - mean
    reconstruct = np.repeat(mean, len(data), axis=0)  # (N, E)
    total = float((data ** 2).sum())
    scale = float(np.abs(feats).max()) if feats.size else 0.0
    chosen, explained = [], []
    for _ in range(min(iters, len(texts))):
        norms = (feats ** 2).sum(axis=1)  # (T,)
        spread = (data @ feats.T).std(axis=0, ddof=1) if len(data) > 1 else np.zeros(len(feats))  # torch's std
        spread = np.where(norms > (1e-12 * scale) ** 2, spread, -np.inf)  # a text already spanned has no direction
        top = int(np.argmax(spread))
        if not np.isfinite(spread[top]):
            break
        t = feats[top]  # (E,)
        coef = data @ t / norms[top]  # (N,)
        removed = coef[:, None] * t[None, :]  # (N, E)
        explained.append(float((removed ** 2).sum()) / total if total > 0 else 0.0)
        chosen.append(top)
        reconstruct = reconstruct + removed
        data = data - removed
        feats = feats - (feats @ t / norms[top])[:, None] * t[None, :]
    return Span(tuple(chosen), tuple(texts[i] for i in chosen), tuple(explained), reconstruct.astype(np.float32))


# ----------------------------------------------------------------------------- zero-shot accuracy
def zero_shot_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent: an image (a row of ``scores`` (N, C)) counts as right when its
    highest-scoring class is one of its own (``labels`` (N, C) bool; several may be true, as for
    a scene with several objects)."""
    top = np.asarray(scores).argmax(axis=1)  # (N,)
    return float(np.asarray(labels, bool)[np.arange(len(top)), top].mean() * 100.0)


def mean_ablated(parts: np.ndarray, ablate: np.ndarray) -> np.ndarray:
    """The sum over parts (N, P, C) with the parts where ``ablate`` (P,) is true replaced by their
    mean over the images (the authors' mean-ablation), as (N, C) scores."""
    ablate = np.asarray(ablate, bool)
    kept = parts[:, ~ablate].sum(axis=1)  # (N, C)
    return kept + parts[:, ablate].mean(axis=0).sum(axis=0)[None, :]


@dataclass
class HeadScores:
    """Every term's zero-shot scores over N images and C classes, in the image embedding divided
    by its norm (as the authors' PRS logger): ``embed`` (N, C), ``heads`` (N, L, H, C), ``mlps``
    (N, L, C); ``labels`` (N, C) bool. Their sum over terms is each image's cosine with each class."""

    embed: np.ndarray
    heads: np.ndarray
    mlps: np.ndarray
    labels: np.ndarray

    def parts(self) -> np.ndarray:
        """(N, 1 + L·H + L, C): the embedding, every head (layer-major), every MLP."""
        n, layers, heads, c = self.heads.shape
        return np.concatenate([self.embed[:, None], self.heads.reshape(n, layers * heads, c), self.mlps], axis=1)

    def accuracy(self, heads: np.ndarray | None = None, mlps: bool = False, embed: bool = False) -> float:
        """Zero-shot accuracy with the heads where ``heads`` (L, H) is true, the MLPs (all of them)
        and/or the embedding term mean-ablated; nothing ablated is the model's own accuracy."""
        _, layers, nh, _ = self.heads.shape
        heads = np.zeros((layers, nh), bool) if heads is None else np.asarray(heads, bool)
        mask = np.concatenate([[embed], heads.ravel(), np.full(layers, mlps)])
        return zero_shot_accuracy(mean_ablated(self.parts(), mask), self.labels)


# ----------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class HeadRow:
    """One head's line of the table (layer 1..L, head 1..H as the app shows them)."""

    layer: int
    head: int
    texts: list[str]
    explained: list[float]
    span_explained: float  # the share of the head's variance all its texts explain together
    variance: float  # the head's total variance over the images (trace of its covariance)
    mean_logit_share: float  # the head's mean |contribution| to the right class's score, over the images' total
    accuracy_without: float  # this head mean-ablated
    accuracy_alone: float  # every other head mean-ablated (the MLPs and embeddings kept)


@dataclass(frozen=True)
class HeadsReport:
    """TextSpan over a model's last layers: one row per head and the accuracies under ablation."""

    model: str
    images: int
    classes: int
    texts: int
    rows: list[HeadRow]
    accuracy: dict[str, float]  # full, mlps_ablated, early_ablated, early_ablated_text_replaced (None without labels)

    def label(self, layer: int, head: int) -> str | None:
        """The head's TextSpan label (its first two texts), or None for a head not labelled."""
        row = next((r for r in self.rows if (r.layer, r.head) == (layer, head)), None)
        return None if row is None else "; ".join(row.texts[:2])


def build_report(model: str, scores: HeadScores, last_terms: np.ndarray, classifier: np.ndarray,
                 text_features: np.ndarray, texts: Sequence[str], iters: int = TEXTS_PER_HEAD,
                 rank: int = SPAN_RANK, with_accuracy: bool = True) -> HeadsReport:
    """TextSpan for every head of the last layers (``last_terms`` (N, n, H, E), the normalised
    terms of the last n layers), and the authors' ablations on ``scores``. ``classifier`` (C, E)
    holds the class prompts' unit embeddings; ``with_accuracy`` False when the images name no
    distinct classes (the accuracies are then None)."""
    n_img, n_last, n_heads, _ = last_terms.shape
    layers = scores.heads.shape[1]
    first = layers - n_last
    acc = (lambda **kw: scores.accuracy(**kw)) if with_accuracy else (lambda **kw: None)
    right = np.where(scores.labels, 1.0, 0.0) / np.maximum(scores.labels.sum(1, keepdims=True), 1)  # (N, C)
    share = np.abs((scores.heads * right[:, None, None]).sum(-1))  # (N, L, H)
    share = share.mean(0) / max(float(share.mean(0).sum()), 1e-12)  # (L, H)
    rows, replaced = [], np.zeros((n_img, classifier.shape[0]))
    for li in range(n_last):
        for h in range(n_heads):
            data = last_terms[:, li, h]  # (N, E)
            span = text_span(data, text_features, texts, iters, rank)
            replaced += (span.reconstruct - data) @ classifier.T  # (N, C): what replacing it changes
            one = np.zeros((layers, n_heads), bool)
            one[first + li, h] = True
            rows.append(HeadRow(first + li + 1, h + 1, list(span.texts), list(span.explained), float(sum(span.explained)),
                                float(((data - data.mean(0)) ** 2).sum(1).mean()), float(share[first + li, h]),
                                acc(heads=one), acc(heads=~one)))
    early = np.zeros((layers, n_heads), bool)
    early[:first] = True
    accuracy = {"full": acc(), "mlps_ablated": acc(mlps=True), "early_ablated": acc(heads=early) if first else None}
    if with_accuracy:
        ablated = mean_ablated(scores.parts(), np.concatenate([[False], early.ravel(), np.zeros(layers, bool)]))
        accuracy["early_ablated_text_replaced"] = zero_shot_accuracy(ablated + replaced, scores.labels)
    else:
        accuracy["early_ablated_text_replaced"] = None
    return HeadsReport(model, n_img, classifier.shape[0], len(texts), rows, accuracy)


def report_markdown(report: HeadsReport) -> str:
    """The readable heads.md: the accuracies under ablation, then each head's texts with the share
    of its variance each explains."""
    acc = report.accuracy
    shown = {k: ("n/a" if v is None else f"{v:.1f} %") for k, v in acc.items()}
    lines = [f"# TextSpan heads of {report.model}", "",
             f"{report.images} images, {report.classes} classes, a bank of {report.texts} texts; "
             f"the last {len({r.layer for r in report.rows})} layers' heads, each with its texts in pick order.", "",
             "| zero-shot accuracy | |", "|---|---|",
             f"| full model | {shown['full']} |", f"| MLPs mean-ablated | {shown['mlps_ablated']} |",
             f"| earlier layers' heads mean-ablated | {shown['early_ablated']} |",
             f"| … and the last layers' heads each replaced by its texts' span | "
             f"{shown['early_ablated_text_replaced']} |", ""]
    if acc["early_ablated"] is None and acc["full"] is not None:
        lines += ["Every layer is labelled, so no earlier layer is ablated.", ""]
    if acc["full"] is None:
        lines += ["Every image names every class, so no accuracy is defined (give each image its own prompts).", ""]
    lines += ["| layer | head | share of the score | span explains | accuracy without it | accuracy with it alone | texts (share of variance) |",
              "|---|---|---|---|---|---|---|"]
    for r in report.rows:
        texts = "; ".join(f"{t} ({e:.0%})" for t, e in zip(r.texts, r.explained))
        without = "n/a" if r.accuracy_without is None else f"{r.accuracy_without:.1f} %"
        alone = "n/a" if r.accuracy_alone is None else f"{r.accuracy_alone:.1f} %"
        lines.append(f"| {r.layer} | {r.head} | {r.mean_logit_share:.1%} | {r.span_explained:.0%} | {without} | {alone} | {texts} |")
    return "\n".join(lines) + "\n"


def report_json(report: HeadsReport) -> str:
    """The heads file a model's directory may hold (``HEADS_FILE``), read back by ``read_heads``."""
    return json.dumps(asdict(report), indent=1) + "\n"


def read_heads(path: str | Path) -> HeadsReport | None:
    """The TextSpan report in a heads file, or None when there is none or it cannot be read (a
    model without labels simply shows none)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return HeadsReport(**{**raw, "rows": [HeadRow(**r) for r in raw["rows"]]})
    except (OSError, ValueError, TypeError, KeyError):
        return None

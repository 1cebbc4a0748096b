"""Explain a data set: ``python -m clipcam batch INPUT --out DIR``.

Inputs become items (an id, an image, its prompts): a folder of images with the prompts given
once; a CSV or JSONL manifest with an image and its prompts per row; or a Hugging Face
``datasets`` dataset saved with ``save_to_disk``. Each item becomes one row per prompt (and per
layer with a sweep): ids, CLIP's logit and probability, the method's raw map on the token grid
as a flat float32 list with its shape, and the settings. An image that cannot be read gets its
rows with the reason in ``error`` and the run goes on. Rows are written to DIR as Parquet files,
a chunk at a time, so an interrupted run keeps what it finished and a rerun skips those images.
clipcam.eval.engine runs it in the process or on Ray.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..constants import DEFAULT_SUBLAYER, DEFAULT_TARGET
from ..images import ACCEPTED
from ..render import DEFAULT_ALPHA, DEFAULT_COLORMAP, explanation_images

#: File endings read as images when INPUT is a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
#: In a CSV manifest, several prompts in one cell are separated by this character.
PROMPT_SEPARATOR = "|"


@dataclass(frozen=True)
class Settings:
    """What every row of a run is explained with (``layer`` None: the model's second-to-last;
    ``sublayer`` None: the model family's default)."""

    model: str = "base"
    method: str = "gradcam"
    layer: int | None = None
    sublayer: str | None = DEFAULT_SUBLAYER
    target: str = DEFAULT_TARGET
    sweep: bool = False
    device: str = "cpu"
    half: bool = False  # the older spelling of precision "fp16"
    precision: str | None = None  # "auto", "fp32", "bf16" or "fp16" (clipcam.precision); None: fp16 if half, else fp32

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Item:
    """One image to explain: ``image`` is a file path or the encoded file's bytes (from a dataset)."""

    id: str
    image: str | bytes
    prompts: tuple[str, ...]
    source: str  # where the image came from, for the rows: its path, or 'dataset[row]'


# ----------------------------------------------------------------------------- inputs
def read_inputs(source: str | Path, prompts: Sequence[str] = ()) -> list[Item]:
    """Items from a folder of images, a .csv / .jsonl manifest, or a ``save_to_disk`` dataset folder.

    ``prompts`` are every image's prompts for a folder, and the default for manifest or dataset
    rows that name none. Raises ValueError with one sentence for an input that cannot be used.
    """
    path = Path(source)
    prompts = tuple(p.strip() for p in prompts if p.strip())
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "state.json").exists()):
        return dataset_items(path, prompts)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"The folder '{path}' holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        if not prompts:
            raise ValueError("A folder of images needs its prompts: give --prompt once per prompt.")
        return [Item(p.relative_to(path).as_posix(), str(p), prompts, str(p)) for p in files]
    if path.suffix.lower() in (".csv", ".jsonl"):
        return manifest_items(path, prompts)
    if not path.exists():
        raise ValueError(f"'{path}' does not exist; give a folder of images, a .csv or .jsonl manifest, "
                         "or a folder written by datasets' save_to_disk.")
    raise ValueError(f"'{path}' is neither a folder nor a .csv or .jsonl manifest; give one of those, "
                     "or a folder written by datasets' save_to_disk.")


def _row_prompts(value: object, default: tuple[str, ...], where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(PROMPT_SEPARATOR)
    found = tuple(p.strip() for p in (value or ()) if isinstance(p, str) and p.strip())
    if not found and not default:
        raise ValueError(f"{where} names no prompts; add a 'prompts' column or give --prompt.")
    return found or default


def manifest_items(path: Path, prompts: tuple[str, ...] = ()) -> list[Item]:
    """Rows with 'image' (a path, relative to the manifest's folder), 'prompts' (a list in JSONL;
    '|'-separated in CSV) or 'prompt', and an optional 'id' (default: the image path as written)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"Cannot read the manifest '{path}': {err.strerror or err}.") from err
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"Line {n} of '{path}' is not JSON ({err.msg}); each line must be one "
                                     "object such as {\"image\": \"cat.png\", \"prompts\": [\"a cat\"]}.") from err
    items, seen = [], set()
    for n, row in enumerate(rows, 1):
        where = f"Row {n} of '{path.name}'"
        if not isinstance(row, dict) or not row.get("image"):
            raise ValueError(f"{where} has no 'image'; each row needs an image path and its prompts.")
        image = Path(str(row["image"]))
        image = image if image.is_absolute() else path.parent / image
        found = _row_prompts(row.get("prompts", row.get("prompt")), prompts, where)
        item_id = str(row.get("id") or row["image"])
        if item_id in seen:
            raise ValueError(f"{where} repeats the id {item_id!r}; give each row a distinct 'id' column.")
        seen.add(item_id)
        items.append(Item(item_id, str(image), found, str(image)))
    if not items:
        raise ValueError(f"The manifest '{path}' has no rows.")
    return items


def dataset_items(path: Path, prompts: tuple[str, ...] = ()) -> list[Item]:
    """Rows of a ``datasets`` dataset saved to disk: an 'image' column (an Image feature or a path),
    'prompts' or 'prompt' (else ``prompts``), and an optional 'id' (default: the row number)."""
    try:
        import datasets  # an optional extra (clipcam[scale]): a clear error where it is missing
    except ImportError as err:
        raise ValueError("Reading a saved dataset needs the datasets package: pip install 'clipcam[scale]'.") from err
    try:
        ds = datasets.load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as err:
        raise ValueError(f"'{path}' is not a dataset saved with save_to_disk ({err}).") from err
    if isinstance(ds, datasets.DatasetDict):
        raise ValueError(f"'{path}' holds several splits ({', '.join(ds)}); give one split's folder.")
    if "image" not in ds.column_names:
        raise ValueError(f"The dataset at '{path}' has no 'image' column (it has {', '.join(ds.column_names)}).")
    if isinstance(ds.features["image"], datasets.Image):
        ds = ds.cast_column("image", datasets.Image(decode=False))  # the encoded file, decoded by clipcam
    items = []
    for n, row in enumerate(ds):
        image = row["image"]
        if isinstance(image, dict):  # {'bytes': ..., 'path': ...}
            image = image.get("bytes") or image.get("path")
        found = _row_prompts(row.get("prompts", row.get("prompt")), prompts, f"Row {n} of the dataset")
        items.append(Item(str(row["id"]) if row.get("id") is not None else str(n), image, found, f"{path.name}[{n}]"))
    return items


# ----------------------------------------------------------------------------- rows
def open_image(item: Item) -> object:
    """What the explainer reads: the path, or a PIL image from the bytes (ValueError when unreadable)."""
    if isinstance(item.image, bytes):
        try:
            return Image.open(io.BytesIO(item.image))
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"Item {item.id} is not an image clipcam can read; please give a {ACCEPTED} file.") from err
    return item.image


def item_rows(explainer, item: Item, settings: Settings, overlays: Path | None = None) -> list[dict]:
    """One row per prompt (× layer for a sweep) for one item; an unreadable image or a bad prompt
    list gives rows with ``error`` set instead of raising. ``overlays``: a folder for one overlay
    PNG per prompt (a sweep's at its second-to-last layer)."""
    base = {"image_id": item.id, "image": item.source, "model": settings.model, "method": settings.method,
            "sublayer": settings.sublayer, "target": settings.target}
    kw = dict(sublayer=settings.sublayer, target=settings.target, method=settings.method)
    try:
        image = open_image(item)
        if settings.sweep:
            res = explainer.sweep(image, list(item.prompts), **kw)
        else:
            res = explainer.explain(image, list(item.prompts), layer=settings.layer, **kw)
    except ValueError as err:
        return [{**base, "prompt_index": k, "prompt": p, "layer": settings.layer, "logit": None, "prob": None,
                 "prob_kind": None, "grid_map": None, "grid_shape": None, "width": None, "height": None,
                 "dead": None, "error": str(err)} for k, p in enumerate(item.prompts)]
    if overlays is not None:
        save_overlays(res.at(res.layers[max(0, len(res.layers) - 2)]), item.id, overlays)
    width, height = res.image.size
    kind = getattr(res, "prob_kind", "softmax")
    base["sublayer"] = res.sublayer  # attention methods report 'self_attn'
    rows = []
    for layer, maps, dead in zip(res.layers, res.layer_maps, res.dead_reasons):
        for k, prompt in enumerate(res.prompts):
            grid = np.asarray(maps[k], dtype=np.float32)
            rows.append({**base, "prompt_index": k, "prompt": prompt, "layer": int(layer),
                         "logit": float(res.logits[k]), "prob": float(res.probs[k]), "prob_kind": kind,
                         "grid_map": grid.ravel().tolist(), "grid_shape": list(grid.shape),
                         "width": int(width), "height": int(height), "dead": dead, "error": None})
    return rows


def require_pyarrow():
    """pyarrow, or a ValueError saying how to install it (it comes with clipcam[scale])."""
    try:
        import pyarrow  # an optional extra (clipcam[scale]): a clear error where it is missing
        import pyarrow.parquet  # noqa: F401
    except ImportError as err:
        raise ValueError("clipcam batch writes Parquet, which needs pyarrow: pip install 'clipcam[scale]'.") from err
    return pyarrow


def schema():
    """The Parquet schema of a run's rows (the same for both engines)."""
    pa = require_pyarrow()

    return pa.schema([
        ("image_id", pa.string()), ("image", pa.string()), ("prompt_index", pa.int32()), ("prompt", pa.string()),
        ("model", pa.string()), ("method", pa.string()), ("layer", pa.int32()), ("sublayer", pa.string()),
        ("target", pa.string()), ("logit", pa.float64()), ("prob", pa.float64()), ("prob_kind", pa.string()),
        ("grid_map", pa.list_(pa.float32())), ("grid_shape", pa.list_(pa.int32())), ("width", pa.int32()),
        ("height", pa.int32()), ("dead", pa.string()), ("error", pa.string()),
    ])


def rows_table(rows: list[dict]):
    """A pyarrow Table of rows in the run's schema."""
    import pyarrow as pa  # an optional extra (clipcam[scale]), checked by require_pyarrow before a run

    return pa.Table.from_pylist(rows, schema=schema())


def read_results(out: str | Path):
    """Every row written to ``out`` so far (its *.parquet files), as one pyarrow Table."""
    pa = require_pyarrow()

    files = sorted(Path(out).glob("*.parquet"))
    if not files:
        return schema().empty_table()
    return pa.concat_tables([pa.parquet.read_table(f, schema=schema()) for f in files])


def done_ids(out: str | Path, settings: Settings) -> set[str]:
    """Ids of the images ``out`` already holds rows for; ValueError when those rows used other settings."""
    table = read_results(out)
    if table.num_rows == 0:
        return set()
    for name in ("model", "method", "sublayer", "target"):
        if getattr(settings, name) is None:  # the family's default sublayer: whatever the rows say
            continue
        values = set(table.column(name).to_pylist()) - {None}
        wanted = {getattr(settings, name)} | ({"self_attn"} if name == "sublayer" else set())
        if not values <= wanted:
            raise ValueError(f"'{out}' already holds results with {name} {sorted(values)[0]!r}, not "
                             f"{getattr(settings, name)!r}; give another --out, or the same settings to resume.")
    return set(table.column("image_id").to_pylist())


def save_overlays(explanation, item_id: str, folder: Path) -> None:
    """One overlay PNG per prompt, named after the item's id and the prompt's number."""
    tiles, _ = explanation_images(explanation, DEFAULT_COLORMAP, DEFAULT_ALPHA)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in item_id)
    folder.mkdir(parents=True, exist_ok=True)
    for k, tile in enumerate(tiles):
        tile.save(folder / f"{stem}-{k + 1:02d}.png")

"""Where a batch runs: in this process (the default: nothing to start), or on Ray Data.

Both run the same function, clipcam.eval.batch.item_rows, over the items not yet in the output
folder and write rows in the same Parquet schema, so their results are the same rows. On Ray the
pipeline is read (the items) → ``map_batches`` with an actor pool that holds one explainer per
worker (a GPU per actor where the cluster has them) → ``write_parquet`` into the same folder.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Sequence

from ..explainer import load_explainer
from .batch import Item, Settings, done_ids, item_rows, rows_table

#: Images per Parquet file in the process (the unit that a rerun resumes from) and per Ray batch.
CHUNK = 32


def pending(items: Sequence[Item], out: Path, settings: Settings) -> list[Item]:
    """The items whose rows ``out`` does not hold yet."""
    done = done_ids(out, settings)
    return [item for item in items if item.id not in done]


def write_chunk(rows: list[dict], out: Path) -> Path:
    """Write rows as one new Parquet file, atomically (a file never appears half written)."""
    import pyarrow.parquet as pq  # an optional extra (clipcam[scale]): needed only when writing results

    out.mkdir(parents=True, exist_ok=True)
    name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = out / f".{name}.tmp"
    pq.write_table(rows_table(rows), tmp)
    os.replace(tmp, out / name)
    return out / name


def run_in_process(items: Sequence[Item], settings: Settings, out: Path, overlays: Path | None = None,
                   chunk: int = CHUNK, progress: bool = True, explainer=None) -> int:
    """Explain the pending items here, writing a Parquet file every ``chunk`` images; returns the
    number of images explained in this run."""
    try:
        from tqdm import tqdm  # an optional extra (clipcam[scale]): a clear error where it is missing
    except ImportError as err:
        raise ValueError("clipcam batch needs tqdm for its progress bar: pip install 'clipcam[scale]'.") from err
    todo = pending(items, out, settings)
    if not todo:
        return 0
    explainer = explainer or load_explainer(settings.model, device=settings.device, half=settings.half,
                                               precision=settings.precision)
    rows: list[dict] = []
    bar = tqdm(total=len(todo), unit="img", disable=not progress, desc="explaining", smoothing=0.1)
    try:
        for n, item in enumerate(todo, 1):
            rows += item_rows(explainer, item, settings, overlays)
            bar.update()
            if n % chunk == 0 or n == len(todo):
                write_chunk(rows, out)
                rows = []
    finally:
        bar.close()
    return len(todo)


class ExplainActor:
    """A Ray actor's callable: loads one explainer when the worker starts, then turns each batch
    of items (a pyarrow table with id, path or data, prompts, source) into rows."""

    def __init__(self, settings: dict, overlays: str | None = None) -> None:
        self.settings = Settings(**settings)
        self.overlays = Path(overlays) if overlays else None
        self.explainer = load_explainer(self.settings.model, device=self.settings.device,
                                        half=self.settings.half, precision=self.settings.precision)

    def __call__(self, batch):
        rows: list[dict] = []
        for record in batch.to_pylist():
            image = record["data"] if record["data"] is not None else record["path"]
            item = Item(record["id"], image, tuple(record["prompts"]), record["source"])
            rows += item_rows(self.explainer, item, self.settings, self.overlays)
        return rows_table(rows)


def run_ray(items: Sequence[Item], settings: Settings, out: Path, address: str = "auto", workers: int | None = None,
            overlays: Path | None = None, batch_size: int = CHUNK, progress: bool = True) -> int:
    """Explain the pending items on Ray Data and append their rows to ``out``; returns how many.

    ``address``: 'auto' joins a running cluster or starts a local one; anything else is a cluster
    address. A cluster started elsewhere (ray.init before this call) is used as it is. ``workers``:
    actors in the pool (default: one per GPU when the cluster has GPUs, else one per CPU).
    """
    try:
        import ray  # an optional extra (clipcam[scale]): a clear error where it is missing
    except ImportError as err:
        raise ValueError("--ray needs Ray: pip install 'clipcam[scale]'.") from err
    todo = pending(items, out, settings)
    if not todo:
        return 0
    if not ray.is_initialized():
        ray.init(address=None if address == "auto" else address, include_dashboard=False,
                 ignore_reinit_error=True, log_to_driver=False)
    gpus = int(ray.cluster_resources().get("GPU", 0)) if settings.device != "cpu" else 0
    workers = workers or gpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    records = [{"id": it.id, "path": None if isinstance(it.image, bytes) else it.image,
                "data": it.image if isinstance(it.image, bytes) else None, "prompts": list(it.prompts),
                "source": it.source} for it in todo]  # paths and encoded files in columns of their own type
    ds = ray.data.from_items(records, override_num_blocks=max(1, -(-len(records) // batch_size)))
    ds = ds.map_batches(
        ExplainActor, fn_constructor_kwargs={"settings": settings.to_dict(),
                                             "overlays": str(overlays) if overlays else None},
        batch_size=batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=1 if gpus else 0, num_cpus=1)
    out.mkdir(parents=True, exist_ok=True)
    ds.write_parquet(str(out.resolve()))
    return len(todo)

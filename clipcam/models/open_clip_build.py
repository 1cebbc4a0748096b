"""Building an open_clip model: its config through open_clip's own factory, its weights from a
``.safetensors`` file only (a ``local-dir:`` folder or an ``hf-hub:`` repository)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from .files import check_safetensors_only

log = logging.getLogger(__name__)


class _DropMessage(logging.Filter):
    """Drops the log records whose message is exactly ``message``; every other record passes."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.message


@contextmanager
def _without_random_init_warning(source: str) -> Iterator[None]:
    """Within the block, open_clip's "No pretrained weights loaded for model '<source>'. Model initialized
    randomly." is not logged, and only that line: clipcam builds the model with ``load_weights=False``
    (so that open_clip never reads a pickle) and loads the safetensors itself right after, so the line
    would tell the reader the opposite of the truth. open_clip logs it on the root logger; the filter
    is removed again on leaving, also on an exception."""
    root = logging.getLogger()
    drop = _DropMessage(f"No pretrained weights loaded for model '{source}'. Model initialized randomly.")
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _weights_file(source: str) -> Path:
    """The .safetensors weights of an open_clip model (a local folder or a hub repo), refusing pickles."""
    if source.startswith("local-dir:"):
        folder = Path(source[len("local-dir:"):]).expanduser()
        check_safetensors_only(folder, "Model folder", config="open_clip_config.json")
        for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "model.safetensors"):
            if (folder / name).is_file():
                return folder / name
        return sorted(folder.glob("*.safetensors"))[0]
    # huggingface_hub is imported for hub models only, when one is loaded
    from huggingface_hub import hf_hub_download

    repo = source[len("hf-hub:"):]
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors"):
        try:
            return Path(hf_hub_download(repo, name))
        except Exception as err:  # noqa: BLE001 - try the next name; the last failure is reported
            last = err
    raise ValueError(
        f"Could not find open_clip safetensors weights for {source} ({type(last).__name__}); clipcam loads "
        "safetensors weights only, and needs the hub or the local cache."
    )


def build_open_clip(source: str, device: torch.device, dtype: torch.dtype) -> tuple[str, torch.nn.Module, Any, Any]:
    """An open_clip model built from its config by open_clip's own factory, its safetensors weights
    loaded, with its tokenizer and preprocessing; a bare folder is named ``local-dir:PATH``."""
    # open_clip (and timm) are imported on the first open_clip load only: importing clipcam must not pay for it
    import open_clip

    if not source.startswith(("hf-hub:", "local-dir:")):
        source = "local-dir:" + str(Path(source).expanduser().resolve())
    weights = _weights_file(source)
    with _without_random_init_warning(source):
        model, _, preprocess = open_clip.create_model_and_transforms(source, load_weights=False, device="cpu")
    open_clip.load_checkpoint(model, str(weights), weights_only=True)
    log.info("Loaded the weights of %s from %s.", source, weights)
    return source, model.to(device, dtype).eval(), open_clip.get_tokenizer(source), preprocess

"""Every short name loads offline from the Hugging Face cache, laid out as its hub repository publishes
it (issue 26): a tiny random model of the short name's family, saved under the repository's own file
names, in the hub's cache layout (models--org--name/snapshots/<hash>/…, refs/main), loaded through
``load_explainer(short name)``. The shipped short names are folders of the package instead. Also: an
open_clip load logs which weights file it read, not open_clip's "initialized randomly", and a missing
package is named with how to install it."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import load_file

from clipcam import load_explainer
from clipcam.constants import PACKAGE_ASSETS
from clipcam.models import MODEL_INFO, clear_cache, load_model
from clipcam.testing import model_folder, tiny_model

#: The files of each short name's hub repository that clipcam reads (its pickles and other frameworks'
#: weights are never downloaded), and the tiny family that stands in for the model (for CLIP, the
#: CLIPTokenizer over a few words: the same class and files as OpenAI's BPE, loaded in a tenth of the time).
HUB_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "base": ("clip-words", ("config.json", "merges.txt", "model.safetensors", "preprocessor_config.json",
                      "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.json")),
    "large": ("clip-words", ("config.json", "merges.txt", "model.safetensors", "preprocessor_config.json",
                       "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.json")),
    "siglip": ("siglip", ("config.json", "model.safetensors", "preprocessor_config.json", "special_tokens_map.json",
                          "spiece.model", "tokenizer_config.json")),
    "laion-b32": ("openclip-vit", ("open_clip_config.json", "open_clip_model.safetensors")),
    "rn50": ("openclip-rn", ("open_clip_config.json", "open_clip_model.safetensors")),
}
#: Short names whose model ships inside the package (clipcam/assets), not on the hub.
SHIPPED = {"shapes": "shapes-clip", "shapes-siglip": "shapes-siglip", "shapes-rn": "shapes-rn"}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache that huggingface_hub (and so transformers and open_clip) reads,
    offline; the model cache is emptied after, so that no later test finds a fake hub model in it."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # read once, at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    clear_cache()
    yield cache
    clear_cache()


def lay_out(cache: Path, repo: str, folder: Path, names: tuple[str, ...]) -> None:
    """Copy a saved model's files into the hub cache's layout for ``repo`` at one commit."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    saved = sorted(f.name for f in folder.iterdir())
    assert set(saved) <= set(names), f"the tiny model writes files its hub repository does not have: {saved}"
    for name in saved:
        shutil.copy(folder / name, snapshot / name)


def test_every_short_name_is_covered():
    """A new short name needs its hub layout here, or is a folder of the package."""
    assert set(MODEL_INFO) == set(HUB_FILES) | set(SHIPPED)


@pytest.mark.parametrize("name", sorted(HUB_FILES))
def test_a_short_name_loads_offline_from_the_hub_cache(name, hub_cache, tmp_path):
    family, names = HUB_FILES[name]
    source = MODEL_INFO[name].source
    repo = source.removeprefix("hf-hub:")
    folder = model_folder(tiny_model(family, tmp_path / "saved", seed=1))
    lay_out(hub_cache, repo, folder, names)

    ex = load_explainer(name, device="cpu")

    assert (ex.adapter.name, ex.adapter.source) == (name, source)
    assert ex.adapter.family == MODEL_INFO[name].family
    weights = next(f for f in ("model.safetensors", "open_clip_model.safetensors") if (folder / f).is_file())
    saved = load_file(str(folder / weights))
    state = ex.model.state_dict()
    assert set(saved) <= set(state)
    assert all(torch.equal(state[k], v) for k, v in saved.items())  # the saved weights, not a random init
    if name == "siglip":
        assert type(ex.adapter.tokenizer).__name__ == "SiglipTokenizer"  # its SentencePiece model, spiece.model


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_short_name_is_a_folder_of_the_package(name):
    source = MODEL_INFO[name].source.removeprefix("local-dir:")
    assert Path(source) == PACKAGE_ASSETS / SHIPPED[name]
    assert any(f.suffix == ".safetensors" for f in Path(source).iterdir())


def test_open_clip_logs_the_weights_it_read_not_a_random_init(tmp_path, caplog):
    """open_clip's "initialized randomly" is not logged, since clipcam loads the weights right after;
    one line names the weights file instead. The filter is gone after the load."""
    source = tiny_model("openclip-vit", tmp_path / "oc", seed=2)
    filters = list(logging.getLogger().filters)
    with caplog.at_level(logging.INFO):
        load_model(source, device="cpu")
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "initialized randomly" in m]
    folder = Path(source.removeprefix("local-dir:")).resolve()
    assert [m for m in messages if m.startswith("Loaded the weights")] == [
        f"Loaded the weights of local-dir:{folder} from {folder / 'open_clip_model.safetensors'}."]
    assert logging.getLogger().filters == filters
    caplog.clear()
    logging.warning(f"No pretrained weights loaded for model 'local-dir:{folder}'. Model initialized randomly.")
    assert len(caplog.records) == 1  # outside the load, the same line is logged as before


def test_a_missing_open_clip_is_named_with_how_to_install_it(tmp_path, monkeypatch):
    source = tiny_model("openclip-rn", tmp_path / "rn", seed=2)
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if not installed: importing it fails
    clear_cache()
    with pytest.raises(ValueError) as err:
        load_model(source, device="cpu")
    assert str(err.value) == (f"Loading {source!r} needs the Python package open-clip-torch, which is not "
                              "installed: install it with pip install open-clip-torch.")

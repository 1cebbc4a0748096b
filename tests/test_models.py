"""Loading: aliases, local directories, safetensors only, the cache, clear errors."""

from __future__ import annotations

import shutil

import pytest
import torch

from clipcam import load_explainer
from clipcam.models import cached_models, load_model, resolve_source


def test_aliases():
    assert resolve_source("base") == "openai/clip-vit-base-patch32"
    assert resolve_source("large") == "openai/clip-vit-large-patch14"
    assert resolve_source("openai/clip-vit-base-patch16") == "openai/clip-vit-base-patch16"


def test_local_model_is_cached_and_frozen(tiny_dir):
    first = load_model(str(tiny_dir), device="cpu")
    assert load_model(str(tiny_dir), device="cpu") is first
    assert str(tiny_dir.resolve()) in cached_models()
    assert not any(p.requires_grad for p in first.model.parameters())
    assert load_explainer(str(tiny_dir), device="cpu").adapter is first


def test_pickle_only_checkpoint_is_refused(tiny_dir, tmp_path):
    target = tmp_path / "pickled"
    shutil.copytree(tiny_dir, target)
    (target / "model.safetensors").unlink()
    torch.save({}, target / "pytorch_model.bin")
    with pytest.raises(ValueError, match="holds only a pickle checkpoint; clipcam loads safetensors weights only"):
        load_model(str(target), device="cpu")


def test_directory_that_is_not_a_model(tmp_path):
    with pytest.raises(ValueError, match="has no config.json: it is not a saved model"):
        load_model(str(tmp_path), device="cpu")


def test_missing_path(tmp_path):
    with pytest.raises(ValueError, match="is not a directory holding a saved model"):
        load_model(str(tmp_path / "nope" / "model"), device="cpu")


def test_unreachable_hub_model_gives_a_sentence():
    with pytest.raises(ValueError, match=r"^Could not load the model 'someone/no-such-clip'"):
        load_model("someone/no-such-clip", device="cpu")


def test_half_precision_needs_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="Half precision needs a CUDA GPU"):
        load_model("base", device="cpu", half=True)

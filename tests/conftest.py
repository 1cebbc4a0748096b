"""Shared fixtures: tiny seeded CLIP models (clipcam.testing.FAMILIES) saved to disk and loaded through
clipcam's own loader."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("CLIPCAM_PRECISION", "fp32")  # the CLI and the app default to auto; tests compare float32 numbers everywhere (test_precision.py tests the others)

import numpy as np
import pytest
from PIL import Image

from clipcam import load_explainer
from clipcam.testing import model_folder, tiny_model

# Everything the tests' clients and in-process servers write to the temporary folder (gradio_client's
# uploads and downloads, gradio's cache, pytest's own folders) goes to one folder, deleted at the end
# (before any test module imports gradio_client, which reads the temporary folder once).
TEST_TMP = tempfile.mkdtemp(prefix="clipcam-tests-")
tempfile.tempdir = TEST_TMP
atexit.register(shutil.rmtree, TEST_TMP, True)

PROMPTS = ["a photo of a cat.", "a photo of a dog.", "a red circle with a blue square."]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """4×4 token grid (image 32, patch 8), two layers, with the shapes models' word-level CLIPTokenizer
    (unknown words spelled in pieces); tiny5 and tiny7 have OpenAI's real BPE."""
    return model_folder(tiny_model("clip-words", tmp_path_factory.mktemp("tiny"), seed=0))


@pytest.fixture(scope="session")
def tiny5_dir(tmp_path_factory):
    """5×5 token grid (image 40, patch 8), three layers: a grid that is not 7×7 and not square-of-2."""
    return model_folder(tiny_model("clip", tmp_path_factory.mktemp("tiny5"), seed=2, image_size=40, patch_size=8,
                                   layers=3))


@pytest.fixture(scope="session")
def tiny7_dir(tmp_path_factory):
    """7×7 token grid like ViT-B/32 (image 56, patch 8), three layers."""
    return model_folder(tiny_model("clip", tmp_path_factory.mktemp("tiny7"), seed=0, image_size=56, patch_size=8,
                                   layers=3))


@pytest.fixture(scope="session")
def explainer(tiny_dir):
    return load_explainer(str(tiny_dir), device="cpu")


@pytest.fixture(scope="session")
def explainer5(tiny5_dir):
    return load_explainer(str(tiny5_dir), device="cpu")


@pytest.fixture(scope="session")
def explainer7(tiny7_dir):
    return load_explainer(str(tiny7_dir), device="cpu")


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(height, width, 3) * 255).astype(np.uint8))


@pytest.fixture
def wide_image():
    return noise_image(96, 48)


@pytest.fixture
def tall_image():
    return noise_image(45, 110, seed=1)


def pytest_addoption(parser):
    parser.addoption("--screenshot", default=None, help="save the browser test's page to this PNG")

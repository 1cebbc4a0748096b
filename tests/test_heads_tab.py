"""The app's Heads tab, in this process (clipcam.app.heads): the grid, the top heads and their
TextSpan labels, a head's map, the time limit, what a session keeps, share links, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from clipcam.app.heads import HeadsTab, check_cell, read_heads_query, share_heads
from clipcam.app.kept import DISPLAY_SIDE
from clipcam.app.server import Stopped
from clipcam.constants import SHAPES_SCENES_DIR
from clipcam.app.service import Service
from clipcam.constants import SHAPES_MODEL_DIR
from clipcam.explainer import load_explainer

SCENE = str(SHAPES_SCENES_DIR / "scene-1.png")
PROMPTS = "a photo of a red circle.\na photo of a blue square."


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A copy of the shapes model whose folder holds a heads file labelling two heads."""
    folder = tmp_path_factory.mktemp("model") / "shapes-labelled"
    shutil.copytree(SHAPES_MODEL_DIR, folder, ignore=shutil.ignore_patterns("heads.*"))
    row = dict(texts=["red circle", "small shape"], explained=[0.8, 0.1], span_explained=0.9, variance=1.0,
               mean_logit_share=0.1, accuracy_without=100.0, accuracy_alone=50.0)
    (folder / "heads.json").write_text(json.dumps({
        "model": "shapes", "images": 3, "classes": 2, "texts": 2, "accuracy": {"full": 100.0},
        "rows": [{"layer": 4, "head": 4, **row}, {"layer": 1, "head": 1, **row, "texts": ["blue"]}]}))
    return str(folder)


@pytest.fixture(scope="module")
def tab(labelled) -> HeadsTab:
    return HeadsTab(Service(["shapes", labelled], device="cpu"))


def test_grid_sums_to_the_logit_and_top_heads_carry_their_labels(tab, labelled) -> None:
    d = load_explainer(labelled, device="cpu").decompose(SCENE, PROMPTS.splitlines())  # the library, directly
    best = tuple(int(i) + 1 for i in np.unravel_index(np.argmax(d.heads[1]), d.heads[1].shape))  # prompt 2's top head
    shown = tab.decompose("s", SCENE, PROMPTS, labelled, prompt=2, cell="%d.%d" % best, colormap="inferno", alpha=1.0)
    assert shown.prompt == 2 and shown.prompts == PROMPTS.splitlines()
    assert shown.header == ["layer", "head 1", "head 2", "head 3", "head 4", "MLP"]
    grid = np.array([row[1:] for row in shown.rows], float)  # (L, H + 1)
    np.testing.assert_allclose(grid[:, :4], d.heads[1], atol=1e-4)
    np.testing.assert_allclose(grid[:, 4], d.mlps[1], atol=1e-4)
    assert f"logit {d.total[1]:.3f} = embedding {d.embed[1]:+.3f}" in shown.terms
    # Top heads by |contribution| to prompt 2, each line with its label where the heads file has one.
    order = np.argsort(-np.abs(d.heads[1]), axis=None)[:5]
    expected = [f"- layer {i // 4 + 1}, head {i % 4 + 1}: {d.heads[1].ravel()[i]:+.3f}" for i in order]
    lines = shown.top.splitlines()
    assert [line.split(" — ")[0] for line in lines] == expected
    # The chosen head's map (inferno at full opacity, whose lightness rises with the value): its
    # brightest patch is where the head adds most to the prompt.
    assert shown.cell == best and shown.picture.size == (256, 256)
    values = d.image_map_of(*best)[1]
    level = np.asarray(shown.picture.convert("L"), float)
    top = np.unravel_index(np.nanargmax(values), values.shape)
    assert level[top] == level.max() and level.max() > np.median(level) + 50


def test_another_prompt_or_cell_is_shown_from_what_the_session_keeps(tab, labelled) -> None:
    tab.decompose("keep", SCENE, PROMPTS, labelled)
    tab.service.loader = None  # no model from here on: only the kept decomposition
    try:
        again = tab.show("keep", 1, "1.1", "viridis", 0.3)
    finally:
        tab.service.loader = load_explainer
    assert again.prompt == 1 and again.cell == (1, 1)
    # The red circle's score comes mostly from layer 4's head 4, which the heads file labels.
    first = again.top.splitlines()[0]
    assert first.startswith("- layer 4, head 4: +") and first.endswith(" — TextSpan: red circle; small shape")
    assert "No TextSpan labels" not in again.top
    with pytest.raises(ValueError) as err:
        tab.show("nobody", 1, None, "inferno", 0.5)
    assert str(err.value) == "Nothing to show yet: press Decompose first."


def test_the_shipped_model_without_its_labels_says_how_to_make_them(tab) -> None:
    shown = tab.decompose("plain", SCENE, PROMPTS, "shapes")
    has_file = (SHAPES_MODEL_DIR / "heads.json").exists()
    assert ("TextSpan:" in shown.top) == has_file
    assert ("`python -m clipcam heads` writes them" in shown.top) == (not has_file)


def test_bad_input_gets_one_sentence(tab) -> None:
    with pytest.raises(ValueError) as err:
        tab.decompose("b", None, PROMPTS, "shapes")
    assert str(err.value) == "No image: upload an image, paste one, or click an example."
    tab.decompose("b", SCENE, PROMPTS, "shapes")
    for cell, sentence in (("9.1", "Pick a layer from 1 to 4 and a head from 1 to 4."),
                           ("x", "A head is named by its layer and head number, such as 3.1; got 'x'.")):
        with pytest.raises(ValueError) as err:
            tab.show("b", 1, cell, "inferno", 0.5)
        assert str(err.value) == sentence
    with pytest.raises(ValueError) as err:
        tab.show("b", 3, None, "inferno", 0.5)
    assert str(err.value) == "Pick a prompt by its number, 1 to 2; got 3."
    with pytest.raises(ValueError) as err:
        tab.decompose("b", SCENE, PROMPTS, "base")
    assert str(err.value).startswith("Unknown model 'base'")


def test_time_limit_and_kept_image_size(tmp_path) -> None:
    late = HeadsTab(Service(["shapes"], device="cpu", time_limit=-1.0))
    with pytest.raises(Stopped) as err:
        late.decompose("t", SCENE, PROMPTS, "shapes")
    assert "time limit" in str(err.value)
    big = tmp_path / "big.png"
    Image.open(SCENE).convert("RGB").resize((2400, 1800)).save(big)
    tab = HeadsTab(Service(["shapes"], device="cpu"))
    shown = tab.decompose("m", str(big), PROMPTS, "shapes", cell="2.1")
    kept = tab.service.store.get("m", "heads").decomposition
    assert max(kept.image.size) <= DISPLAY_SIDE and max(shown.picture.size) <= DISPLAY_SIDE


def test_share_links_carry_the_prompt_and_cell() -> None:
    query = share_heads("example=shapes&model=shapes", 2, (3, 1))
    assert query == "example=shapes&model=shapes&tab=heads&prompt=2&cell=3.1"
    assert read_heads_query({"tab": "heads", "prompt": "2", "cell": "3.1"}) == {"tab": "heads", "prompt": 2, "cell": "3.1"}
    assert read_heads_query({"tab": "heads", "prompt": "x", "cell": "3;1"}) == {"tab": "heads"}
    assert read_heads_query({"prompt": "2"}) == {}
    assert check_cell("", 4, 4) is None and check_cell((2, 3), 4, 4) == (2, 3)

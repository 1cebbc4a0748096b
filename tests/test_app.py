"""The app's HTTP API, through gradio_client, against the app served on 127.0.0.1."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from apphelpers import running_app
from conftest import PROMPTS

from clipcam.render import format_score

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

pytestmark = pytest.mark.slow  # the app served over HTTP: not in `make test-fast`

ROOT = Path(__file__).resolve().parents[1]
CAT = str(ROOT / "assets" / "chelsea.png")
VIEW = dict(colormap="inferno", alpha=0.5, shared=False)
MISSING = "/nonexistent/clip-model"


@pytest.fixture(scope="module")
def client(tiny_dir, tiny5_dir):
    with running_app([tiny_dir, tiny5_dir, MISSING]) as url:
        yield Client(url, verbose=False)


def call_explain(client, model, prompts="\n".join(PROMPTS), image=CAT, layer=1, sublayer="mlp.fc1",
                 target="logit", method="gradcam", **view):
    return client.predict(image=handle_file(image) if image else None, prompts_text=prompts, model=str(model),
                          layer=layer, sublayer=sublayer, target=target, method=method, **{**VIEW, **view},
                          api_name="/explain")


def test_explain_returns_one_image_and_score_per_prompt_in_order(client, tiny_dir):
    gallery, shown_scores, scores, notice, files, legend = call_explain(client, tiny_dir,
                                                                        prompts="\n".join(PROMPTS) + "\n\n")
    assert len(gallery) == 3
    assert [item["caption"].split(" · ")[2] for item in gallery] == PROMPTS
    assert [item["caption"].split(" · ")[0] for item in gallery] == ["1", "2", "3"]
    assert scores["prompts"] == PROMPTS
    assert sum(scores["probs"]) == pytest.approx(1.0)
    shown = re.findall(r"class='score-prompt'>(.*?)</span><span class='score-value'>(.*?)</span>", shown_scores)
    assert shown == [(p, format_score(q)) for p, q in zip(PROMPTS, scores["probs"])]  # the tiles' order
    assert "Per-prompt scale" in legend and "data-colormap='inferno'" in legend
    assert files is None  # downloads are built when asked for, from the result kept on the server
    files = client.predict(**VIEW, api_name="/downloads")
    assert sorted(Path(f).name for f in files) == ["grid.png", "heatmaps.npz", "scores.json"]
    saved = json.loads(Path([f for f in files if f.endswith(".json")][0]).read_text())
    assert saved["prompts"] == PROMPTS and saved["layer"] == 1


def test_downloads_before_any_result_say_what_to_do(tiny_dir):
    with running_app([tiny_dir]) as url:
        with pytest.raises(Exception) as err:
            Client(url, verbose=False).predict(**VIEW, api_name="/downloads")
    assert "Nothing to download yet: run an explanation first" in str(err.value)


def test_display_settings_redraw_the_kept_result_without_the_model(client, tiny_dir):
    """/restyle re-draws this session's gallery from the maps kept on the server: other colours,
    the same prompts in the same order, and no second model call (the scores stay as they were)."""
    gallery, *_ = call_explain(client, tiny_dir, prompts="a cat\na dog", colormap="inferno", alpha=0.5)
    shown, sweep_img, left, right, legend, _, _, words, _, _ = client.predict(colormap="jet", alpha=1.0, shared=True,
                                                                              api_name="/restyle")
    assert "data-colormap='jet'" in legend and "Shared scale" in legend
    assert [item["caption"] for item in shown] == [item["caption"] for item in gallery]
    from PIL import Image

    before, after = (np.asarray(Image.open(item["image"]), dtype=float) for item in (gallery[0], shown[0]))
    assert before.shape == after.shape and np.abs(before - after).mean() > 10


def test_display_settings_recolour_the_kept_words(client, tiny_dir):
    """The word panels follow a colour-map change: their kept relevance is re-drawn with the new
    colours (chefer is unsigned, so it takes the maps' colour map); Off forgets it."""
    import re

    from gradio_client import Client as Fresh

    session = Fresh(client.src, verbose=False)  # a session of its own: no other test's words
    ask = dict(image=handle_file(CAT), prompts_text="a photo of a cat.", model=str(tiny_dir), sublayer="mlp.fc1",
               target="logit", method="gradcam", alpha=0.5, words="chefer", api_name="/explain_words")
    inferno = session.predict(colormap="inferno", **ask)
    *_, words, left, right = session.predict(colormap="jet", alpha=0.5, shared=False, api_name="/restyle")
    assert words == session.predict(colormap="jet", **ask)  # exactly what a fresh run with jet draws
    colours = re.compile(r"background:rgb\((\d+,\d+,\d+)\)")
    assert colours.findall(words) != colours.findall(inferno) and "jet: dark = little" in words
    def unchanged(value):  # gradio's "leave this output as it is"
        return isinstance(value, dict) and value.get("__type__") == "update"

    assert unchanged(left) and unchanged(right)  # nothing kept on the Compare tab
    session.predict(**{**ask, "words": "off", "colormap": "inferno"})
    *_, words, _, _ = session.predict(colormap="viridis", alpha=0.5, shared=False, api_name="/restyle")
    assert unchanged(words)


def test_deeper_model_accepts_its_own_layers(client, tiny5_dir):
    _, _, scores, _, _, _ = call_explain(client, tiny5_dir, layer=3, sublayer="self_attn.v_proj")
    assert scores["layer"] == 3


def test_duplicates_are_dropped_with_a_notice(client, tiny_dir):
    gallery, _, scores, notice, _, _ = call_explain(client, tiny_dir, prompts="a cat\na dog\na cat\n")
    assert scores["prompts"] == ["a cat", "a dog"] and len(gallery) == 2
    assert "1 duplicate prompt was dropped." in notice


def test_other_methods(client, tiny_dir):
    _, _, scores, _, files, _ = call_explain(client, tiny_dir, method="gradcam++", target="log_softmax")
    assert (scores["method"], scores["target"]) == ("gradcam++", "log_softmax")
    for method in ("chefer", "gradeclip", "legrad", "scorecam"):
        gallery, _, scores, _, _, _ = call_explain(client, tiny_dir, method=method, layer=1)
        assert scores["method"] == method and len(gallery) == 3


def test_masked_forward_limit(tiny_dir):
    """Score-CAM requests above the server's forward limit are refused with what to change; those
    below it run (the tiny model is 32 wide, its mlp.fc1 128)."""
    with running_app([tiny_dir], max_forwards=40) as url:
        client = Client(url, verbose=False)
        _, _, scores, _, _, _ = call_explain(client, tiny_dir, method="scorecam", sublayer="self_attn.v_proj")
        assert scores["method"] == "scorecam"
        with pytest.raises(Exception) as err:
            call_explain(client, tiny_dir, method="scorecam", sublayer="mlp.fc1")
        assert ("Score-CAM would run 128 forward passes here (128 channels of mlp.fc1), above this server's limit "
                "of 40 (CLIPCAM_MAX_FORWARDS).") in str(err.value)
        with pytest.raises(Exception) as err:
            client.predict(image=handle_file(CAT), prompts_text="a cat\na dog", model=str(tiny_dir),
                           sublayer="self_attn.v_proj", target="logit", method="scorecam", **VIEW, api_name="/sweep")
        assert "Score-CAM would run 64 forward passes here (2 layers × 32 channels of self_attn.v_proj)" in str(err.value)


def test_dead_sublayer_notice(client, tiny_dir):
    _, _, scores, notice, _, _ = call_explain(client, tiny_dir, layer=2, sublayer="mlp.fc2")
    assert "Dead sublayer" in notice and scores["dead"]


def test_sweep_and_compare(client, tiny_dir, tiny5_dir):
    grid, plot, notice, files, _ = client.predict(
        image=handle_file(CAT), prompts_text="a cat\na dog", model=str(tiny5_dir), sublayer="mlp.fc1", target="logit", method="gradcam",
        **VIEW,
        api_name="/sweep")
    assert Path(grid).exists() and files is None
    files = client.predict(**VIEW, api_name="/sweep_downloads")
    assert sorted(Path(f).name for f in files) == ["grid.png", "heatmaps.npz", "scores.json"]
    assert np.load([f for f in files if f.endswith(".npz")][0])["grid_maps"].shape == (3, 2, 5, 5)
    assert "Layer 3" in notice
    out = client.predict(image=handle_file(CAT), prompts_text="a cat\na dog", left=str(tiny_dir),
                         right=str(tiny5_dir), depth=0.5, sublayer="mlp.fc1", target="contrast", method="layercam",
                         **VIEW, api_name="/compare")
    left_gallery, left_scores, right_gallery, right_scores, notice = out
    assert len(left_gallery) == len(right_gallery) == 2
    assert left_scores.count("score-row") == right_scores.count("score-row") == 2
    assert "layer 1 of 2" in notice and "layer 2 of 3" in notice


@pytest.mark.parametrize("kwargs,message", [
    (dict(prompts=""), "No prompts given: type at least one prompt, one per line"),
    (dict(prompts="\n".join(f"prompt {i}" for i in range(17))), "Too many prompts: 17 given, at most 16 at once."),
    (dict(layer=7), "Layer 7 is out of range: this model's vision encoder has layers 1 to 2."),
    # dropdowns are checked by gradio itself on the server, which lists the valid choices
    (dict(sublayer="mlp.fc9"), "Value: mlp.fc9 is not in the list of choices: ['layer_norm1', 'self_attn.q_proj'"),
    (dict(colormap="rainbow"), "Value: rainbow is not in the list of choices: ['inferno', 'turbo'"),
    (dict(target="softmax"), "Value: softmax is not in the list of choices: ['logit', 'log_softmax', 'contrast']"),
    (dict(method="saliency"), "Value: saliency is not in the list of choices: ['gradcam', 'hirescam'"),
    (dict(alpha=3), "Value 3 is greater than maximum value 1."),
    (dict(image=None), "No image: upload an image, paste one, or click an example."),
])
def test_bad_input_gets_its_sentence(client, tiny_dir, kwargs, message):
    with pytest.raises(Exception) as err:
        call_explain(client, tiny_dir, **kwargs)
    assert message in str(err.value)


def test_a_huge_invalid_value_is_echoed_shortened(client, tiny_dir):
    for field in ("model", "sublayer"):
        with pytest.raises(Exception) as err:
            call_explain(client, tiny_dir, **{field: "z" * 5_000_000}) if field != "model" else \
                call_explain(client, "z" * 5_000_000)
        message = str(err.value)
        assert "Value: " + "z" * 79 + "… is not in the list of choices" in message and len(message) < 2000


def test_model_outside_the_allowlist_is_refused(client):
    with pytest.raises(Exception) as err:
        call_explain(client, "openai/clip-vit-base-patch16")
    assert "Value: openai/clip-vit-base-patch16 is not in the list of choices" in str(err.value)


def test_model_that_cannot_load_leaves_the_others_serving(client, tiny_dir):
    with pytest.raises(Exception) as err:
        call_explain(client, MISSING)
    assert "is not a directory holding a saved model" in str(err.value)
    gallery, *_ = call_explain(client, tiny_dir, prompts="a cat")
    assert len(gallery) == 1


def test_not_an_image(client, tiny_dir, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all")
    with pytest.raises(Exception) as err:
        call_explain(client, tiny_dir, image=str(bad))
    assert "'notes.png' is not an image clipcam can read; please give a PNG, JPEG, WebP, GIF, BMP or TIFF file." in str(err.value)


def test_app_keeps_serving_after_errors(client, tiny_dir):
    with pytest.raises(Exception, match="No prompts given"):
        call_explain(client, tiny_dir, prompts="")
    gallery, *_ = call_explain(client, tiny_dir, prompts="a cat")
    assert len(gallery) == 1


def test_upload_and_pixel_limits(tiny_dir, tmp_path):
    """Both limits are configurable; the pixel limit is checked from the header, before decoding."""
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (10, 200, 30)).save(big)
    with running_app([tiny_dir], max_file_size="100kb", max_pixels=1_000_000) as url:
        client = Client(url, verbose=False)
        with pytest.raises(Exception) as err:
            call_explain(client, tiny_dir, image=CAT)  # 240 kB > 100 kB
        assert "exceeds" in str(err.value) or "too large" in str(err.value).lower()
        with pytest.raises(Exception) as err:
            call_explain(client, tiny_dir, image=str(big))  # a small PNG file, but 6 megapixels
        assert "The image is 3000×2000 = 6 megapixels; the limit is 1 megapixels." in str(err.value)


def test_word_relevance_under_the_heatmaps_and_off(client, tiny_dir):
    html = client.predict(image=handle_file(CAT), prompts_text="a photo of a cat.\na red zebra.", model=str(tiny_dir),
                          sublayer="mlp.fc1", target="logit", method="gradcam", colormap="inferno", alpha=0.5,
                          words="gradinput", api_name="/explain_words")
    assert html.count('class="clipcam-word"') == 6 + 4  # a photo of a cat . / a red zebra .
    assert "a photo of a cat." in html and "lowers the score" in html
    assert client.predict(image=handle_file(CAT), prompts_text="a cat", model=str(tiny_dir), sublayer="mlp.fc1",
                          target="logit", method="gradcam", colormap="inferno", alpha=0.5, words="off",
                          api_name="/explain_words") == ""
    left, right = client.predict(image=handle_file(CAT), prompts_text="a cat", left=str(tiny_dir), right=MISSING,
                                 sublayer="mlp.fc1", target="logit", method="gradcam", colormap="inferno", alpha=0.5,
                                 words="chefer", api_name="/compare_words")
    assert left.count('class="clipcam-word"') == 2 and "⚠️" in right
    with pytest.raises(Exception, match="nouns is not in the list of choices"):  # gradio's dropdown refuses it
        client.predict(image=handle_file(CAT), prompts_text="a cat", model=str(tiny_dir), sublayer="mlp.fc1",
                       target="logit", method="gradcam", colormap="inferno", alpha=0.5, words="nouns",
                       api_name="/explain_words")


def test_a_user_error_prints_no_traceback(client, tiny_dir, capfd, caplog):
    import logging

    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="clipcam.app"), pytest.raises(Exception, match="No prompts given"):
        call_explain(client, tiny_dir, prompts="")
    assert "Traceback" not in capfd.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.name == "clipcam.app"] == [
        "explain refused: No prompts given: type at least one prompt, one per line, such as 'a photo of a cat.'."]


def test_compare_counts_both_models_against_the_forward_limit(tiny_dir, tiny5_dir):
    """Each model alone (128 masked forwards on mlp.fc1) is within the limit of 200; both together are not."""
    with running_app([tiny_dir, tiny5_dir], max_forwards=200) as url:
        client = Client(url, verbose=False)
        _, _, scores, _, _, _ = call_explain(client, tiny_dir, method="scorecam", sublayer="mlp.fc1")
        assert scores["method"] == "scorecam"
        with pytest.raises(Exception) as err:
            client.predict(image=handle_file(CAT), prompts_text="a cat\na dog", left=str(tiny_dir), right=str(tiny5_dir),
                           depth=0.5, sublayer="mlp.fc1", target="logit", method="scorecam", **VIEW,
                           api_name="/compare")
    assert ("Score-CAM would run 256 forward passes here (2 models together), above this server's limit of 200 "
            "(CLIPCAM_MAX_FORWARDS).") in str(err.value)


def test_handlers_run_without_serving(tiny_dir):
    """App's handlers are plain methods: a share link's settings are applied where they fit the
    model and dropped where they do not; a bad request on the page is one sentence in the notice."""
    from types import SimpleNamespace

    from clipcam.app.handlers import on_page
    from clipcam.app.layout import build_demo

    app = build_demo(models=["shapes", str(tiny_dir)], device="cpu").clipcam_app
    link = SimpleNamespace(query_params={"model": "shapes", "method": "gradcam", "example": "shapes-2",
                                         "sublayer": "mlp.c_fc", "colormap": "jet"}, headers={})
    notice, image, prompts, key, colormap, _, _, left, right, model, layer, sublayer, _, method, *_ = app.on_load(link)
    assert notice == "ℹ️ Settings restored from a shared link." and key == "shapes-2" and image.endswith("scene-2.png")
    assert (model["value"], method["value"], layer["value"], colormap["value"]) == ("shapes", "gradcam", 2, "jet")
    assert sublayer["value"] == "self_attn.v_proj"  # mlp.c_fc is open_clip's name, not this model's
    assert right["value"] == str(tiny_dir)
    out = on_page(app.explain, 6, 3)(CAT, "", "shapes", 3, "self_attn.v_proj", "logit", "chefer", "inferno", 0.5,
                                     False, None, progress=None)
    assert out[3] == "⚠️ No prompts given: type at least one prompt, one per line, such as 'a photo of a cat.'."
    assert all(part == {"__type__": "update"} for i, part in enumerate(out) if i != 3)


def test_siglip_scores_are_shown_as_sigmoids_everywhere(tmp_path):
    """A tiny SigLIP through the same loader as the hub's: the scores block, the legend, the tiles'
    captions and scores.json all say sigmoid, and the scores need not add up to 100 %."""
    from clipcam.testing import tiny_model

    siglip = tiny_model("siglip", tmp_path / "siglip", seed=3)
    with running_app([siglip]) as url:
        client = Client(url, verbose=False)
        gallery, shown, scores, notice, _, legend = call_explain(client, siglip, method="legrad", sublayer="mlp.fc1")
        files = client.predict(**VIEW, api_name="/downloads")
    assert scores["prob_kind"] == "sigmoid" and abs(sum(scores["probs"]) - 1) > 1e-3
    assert "SigLIP's sigmoid per prompt" in shown and "need not add up to 100 %" in legend
    assert "With one prompt" not in notice
    values = re.findall(r"class='score-value'>(.*?)</span>", shown)
    assert values == [format_score(q) for q in scores["probs"]]
    assert [item["caption"].split(" · ")[1] for item in gallery] == values
    saved = json.loads(Path([f for f in files if f.endswith(".json")][0]).read_text())
    assert saved["prob_kind"] == "sigmoid" and saved["sublayer"] is None

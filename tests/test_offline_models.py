"""The three offline shapes models in the app (issue 26): offered by default, with the shapes scenes as
their examples and their measured starting settings; offline, Compare pairs shapes with shapes-siglip,
runs both sides, and labels its depth slider from the two models chosen."""

from __future__ import annotations

from clipcam.app.choices import allowed_models, compare_partner, model_defaults
from clipcam.app.examples import example_model, get_example, model_kind
from clipcam.app.service import Service
from clipcam.app.settings import Settings
from clipcam.constants import SHAPES_SCENES_DIR
from clipcam.models import MODEL_INFO, start_settings

PROMPTS = "a photo of a red circle.\na photo of a blue square.\na photo of a green triangle."


def offline(name: str) -> str | None:
    """unavailable_reason as it answers offline: the shipped models load, the hub's do not."""
    return None if name.startswith("shapes") else "it is not in the local cache and HF_HUB_OFFLINE is set."


def test_the_offline_models_are_offered_by_default_with_their_starts():
    assert {"shapes", "shapes-siglip", "shapes-rn"} <= set(allowed_models(""))
    assert (MODEL_INFO["shapes-siglip"].family, MODEL_INFO["shapes-rn"].family) == ("siglip", "open_clip-resnet")
    assert model_defaults("shapes-siglip", 1) == (1, "self_attn.v_proj", "logit", "gradcam-elementwise")
    start = start_settings("shapes-rn")
    assert model_defaults("shapes-rn", 4) == (4 - start.from_end, start.sublayer, start.target, start.method)
    assert "Starting settings of the offline models" in start.evidence


def test_the_shapes_scenes_are_the_examples_of_every_shapes_model():
    scene = get_example("shapes-1")
    assert [model_kind(n) for n in ("shapes", "shapes-siglip", "shapes-rn", "base")] == ["shapes"] * 3 + ["photo"]
    assert example_model(scene, "shapes-rn", ["base", "shapes-rn"], offline) == ("shapes-rn", "")
    assert example_model(scene, "base", ["base", "shapes-siglip"], offline) == (
        "shapes-siglip", "Switched to the **shapes-siglip** model: this scene comes from its shapes world.")
    assert scene.path == SHAPES_SCENES_DIR / "scene-1.png" and scene.path.is_file()


def test_offline_compare_starts_on_shapes_against_shapes_siglip():
    models = allowed_models("")
    start = Settings(models, offline).start({})
    assert (start.state.name, start.right) == ("shapes", "shapes-siglip")
    assert compare_partner("base", ["base", "shapes", "laion-b32"]) == "laion-b32"  # online: as before
    assert compare_partner("shapes", ["shapes"]) == "shapes"


def test_the_depth_label_is_computed_from_the_two_models():
    settings = Settings(allowed_models(""), offline)
    assert settings.depth_label(0.9, "shapes", "shapes-siglip") == "Relative depth (0.9 = layer 4 of 4, layer 1 of 1)"
    assert settings.depth_label(0.9, "base", "large") == "Relative depth (0.9 = layer 11 of 12, layer 22 of 24)"
    assert settings.depth_label(0.5, "shapes", "shapes-rn") == "Relative depth (0.5 = layer 2 of 4, stage 2 of 4)"


def test_switching_compare_to_a_model_that_cannot_load_says_why_at_once():
    settings = Settings(allowed_models(""), offline)
    label, notice = settings.compare_models("shapes", "base", 0.9)
    assert label == "Relative depth (0.9 = layer 4 of 4, layer 11 of 12)"
    assert notice == ("⚠️ **base** cannot be loaded now: it is not in the local cache and HF_HUB_OFFLINE is set. "
                      "Pick **shapes**, which works offline.")
    assert settings.compare_models("shapes", "shapes-siglip", 0.9)[1] == ""


def test_compare_defaults_run_on_both_sides():
    """Chefer (shapes' start) needs a class token, which the SigLIP has not: that side shows its own
    starting method, says so, and both sides have maps."""
    service = Service(["base", "shapes", "shapes-siglip"], device="cpu", reason_for=offline)
    layer, sublayer, target, method = model_defaults("shapes", 4)
    done = service.compare("s", str(SHAPES_SCENES_DIR / "scene-1.png"), PROMPTS, "shapes", "shapes-siglip", 0.9,
                           sublayer, target, method, "jet", 0.5, False)
    assert len(done.left) == 3 and len(done.right) == 3
    lines = done.notice.split("\n\n")
    assert lines[0] == ("**shapes-siglip**: ℹ️ SigLIP (Hugging Face) models cannot run Chefer relevance, so this side "
                        "shows Grad-CAM element-wise, where shapes-siglip starts.")
    assert lines[1].startswith("**shapes**: layer 4 of 4,") and lines[2].startswith("**shapes-siglip**: layer 1 of 1,")

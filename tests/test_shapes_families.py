"""The shapes-world SigLIP and ResNet CLIP (tools/train_shapes.py --family siglip / rn), loaded through
each family's own loader exactly as a hub model of that family is, and still seeing the scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
import torch.nn.functional as F
from PIL import Image
from clihelpers import run_cli

from clipcam import load_explainer
from clipcam.constants import SHAPES_MODEL_DIR, SHAPES_RN_DIR, SHAPES_SIGLIP_DIR
from clipcam.eval.shapes import COLOURS, SHAPES, VOCABULARY, ShapeObject, evaluation_set, object_prompt, render
from clipcam.testing.reference import own_model

CLIP_DIR, SIGLIP_DIR, RN_DIR = SHAPES_MODEL_DIR, SHAPES_SIGLIP_DIR, SHAPES_RN_DIR
OBJECTS = [ShapeObject(s, c, (0, 0), 0) for c in COLOURS for s in SHAPES]
PROMPTS = [object_prompt(o) for o in OBJECTS]
SCENES = evaluation_set(40, seed=7)  # not the training stream (seed 0) nor training.json's held-out set (99)


def zero_shot(similarities: torch.Tensor) -> float:
    """Share of SCENES whose top prompt (of all 12 objects) names an object in the scene."""
    top = similarities.argmax(dim=1)  # (scenes,)
    return float(np.mean([OBJECTS[int(t)].name in {o.name for o in s.objects} for t, s in zip(top, SCENES)]))


def two_objects():
    return render((ShapeObject("circle", "red", (16, 18), 11), ShapeObject("square", "blue", (46, 44), 11)),
                  np.random.default_rng(0)).image


@pytest.mark.skipif(not (SIGLIP_DIR / "model.safetensors").exists(), reason="the shapes SigLIP is not shipped")
def test_shapes_siglip_loads_as_siglip_and_sees_the_scenes():
    from transformers import AutoProcessor, SiglipModel

    model = SiglipModel.from_pretrained(SIGLIP_DIR).eval()
    processor = AutoProcessor.from_pretrained(SIGLIP_DIR)
    assert model.config.vision_config.vision_use_head, "SigLIP reads the image through its attention-pooling head"
    assert processor.image_processor.size == {"height": 64, "width": 64}  # a squash, no crop
    assert not getattr(processor.image_processor, "do_center_crop", False)
    record = json.loads((SIGLIP_DIR / "training.json").read_text())
    assert record["family"] == "siglip" and record["zero_shot"] >= 0.9 and record["binding"] >= 0.9

    tokens = processor(text=PROMPTS, padding="max_length", return_tensors="pt")
    assert set(tokens) == {"input_ids"} and tokens["input_ids"].shape == (12, model.config.text_config.max_position_embeddings)
    assert all(len(processor.tokenizer.tokenize(w)) == 1 for w in VOCABULARY)
    with torch.no_grad():
        out = model(**processor(text=PROMPTS, images=[s.image for s in SCENES], padding="max_length",
                                return_tensors="pt"))
        assert zero_shot(out.logits_per_image) >= 0.9
        # sigmoid scores: the objects in the picture are likely, a colour-swapped one is not
        pair = model(**processor(text=["a photo of a red circle.", "a photo of a blue circle.",
                                       "a photo of a blue square.", "a photo of a red square."],
                                 images=[two_objects()], padding="max_length", return_tensors="pt"))
    probs = torch.sigmoid(pair.logits_per_image[0])
    assert probs[0] > 0.5 and probs[2] > 0.5 and probs[1] < 0.5 and probs[3] < 0.5, probs


@pytest.mark.skipif(not (RN_DIR / "open_clip_model.safetensors").exists(), reason="the shapes ResNet is not shipped")
def test_shapes_resnet_loads_as_an_open_clip_local_dir_and_sees_the_scenes():
    import open_clip
    from open_clip.modified_resnet import ModifiedResNet
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{RN_DIR}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{RN_DIR}")
    model.eval()
    assert isinstance(model.visual, ModifiedResNet)
    record = json.loads((RN_DIR / "training.json").read_text())
    assert record["family"] == "rn" and record["zero_shot"] >= 0.9 and record["binding"] >= 0.9
    assert all(len(tokenizer.encode(w)) == 1 for w in VOCABULARY)  # open_clip's own CLIP BPE

    pixels = torch.stack([preprocess(Image.fromarray(s.image)) for s in SCENES])
    assert pixels.shape[-2:] == (128, 128)
    with torch.no_grad():
        grid = model.visual.layer4(model.visual.layer3(model.visual.layer2(model.visual.layer1(
            model.visual.stem(pixels[:1])))))
        assert grid.shape[-2:] == (4, 4)  # layer4's grid, where the classic ResNet CLIP Grad-CAM reads
        text = F.normalize(model.encode_text(tokenizer(PROMPTS)), dim=-1)
        image = F.normalize(model.encode_image(pixels), dim=-1)
        assert zero_shot(image @ text.T) >= 0.9
        sims = F.normalize(model.encode_image(preprocess(Image.fromarray(two_objects()))[None]), dim=-1) @ text.T
    idx = {p: i for i, p in enumerate(PROMPTS)}
    assert sims[0, idx["a photo of a red circle."]] > sims[0, idx["a photo of a blue circle."]]
    assert sims[0, idx["a photo of a blue square."]] > sims[0, idx["a photo of a red square."]]


@pytest.mark.skipif(not (RN_DIR / "open_clip_model.safetensors").exists(), reason="the shapes ResNet is not shipped")
def test_evaluating_every_method_of_the_resnet_runs_the_ones_it_supports(tmp_path):
    """``eval --methods all`` on a ResNet means every method its family supports: the Grad-CAM family
    and Score-CAM on its stages, none of the attention methods (which would refuse it)."""
    from clipcam import load_explainer

    out = tmp_path / "eval"
    proc = run_cli("eval", "--shapes", "easy", "--model", f"local-dir:{RN_DIR}", "--methods", "all", "--sublayers",
                   "all", "--samples", "2", "--curves", "0", "--layers", "4", "--no-baselines", "--no-progress", "--out", out)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((out / "eval.json").read_text())["rows"]
    supported = load_explainer(f"local-dir:{RN_DIR}", device="cpu").methods
    assert {r["method"] for r in rows} == set(supported) and "chefer" not in supported
    assert {r["layer"] for r in rows} == {4}


@pytest.mark.skipif(not (SIGLIP_DIR / "model.safetensors").exists(), reason="the shapes SigLIP is not shipped")
def test_evaluating_the_siglip_keeps_the_baselines_that_apply(tmp_path):
    """``eval`` on a SigLIP directory with the baselines on: the random pixel and random object, and
    no attention rollout, which follows CLIP's class token (it used to load the SigLIP as a CLIP
    and fail)."""
    out = tmp_path / "eval"
    proc = run_cli("eval", "--shapes", "easy", "--model", SIGLIP_DIR, "--methods", "legrad,gradcam", "--sublayers",
                   "self_attn.v_proj", "--samples", "3", "--curves", "0", "--layers", "1", "--no-progress", "--out", out)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((out / "eval.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"legrad", "gradcam", "random_pixel", "random_object"}


@pytest.mark.skipif(not (SIGLIP_DIR / "model.safetensors").exists(), reason="the shapes SigLIP is not shipped")
def test_siglip_gradient_maps_point_at_the_named_object():
    """Through the SigLIP adapter (no class token, gradients through the attention-pooling head, the
    squash geometry), the best methods of the benchmark point at the object each prompt names on a
    small sample too: 0.97 and 0.94 on the table's 100 scenes, 0.41 for a random object."""
    from clipcam import load_explainer
    from clipcam.eval.evaluate import best, evaluate, shapes_samples

    ex = load_explainer(str(SIGLIP_DIR), device="cpu")
    assert ex.adapter.family == "siglip" and ex.num_layers == 1
    result = evaluate(ex, shapes_samples(24), methods=("gradcam-elementwise", "hirescam"),
                      sublayers=("self_attn.v_proj",), targets=("logit",), layers=[1], n_curves=0, baselines=False)
    for method in ("gradcam-elementwise", "hirescam"):
        top = best(result["rows"], method)
        assert top["pointing"] >= 0.85 and top["other_object"] <= 0.1, (method, top)


class OwnLogits(torch.nn.Module):
    """A trained shapes model as its own library runs it, image → logits (1, K), for pytorch-grad-cam."""

    def __init__(self, source: str, prompts):
        super().__init__()
        own = own_model(source)
        self.model, self.open_clip = own.model, source.startswith("local-dir:")
        if self.open_clip:
            self.ids = own.tokenizer(list(prompts))
        elif self.model.config.model_type == "siglip":  # padded to the text length, no mask, as it was trained
            length = min(64, self.model.config.text_config.max_position_embeddings)
            self.ids = own.tokenizer(list(prompts), padding="max_length", max_length=length, return_tensors="pt")
        else:
            self.ids = own.tokenizer(list(prompts), padding=True, return_tensors="pt")

    def forward(self, pixels):
        if self.open_clip:
            image_f, text_f, scale = self.model(pixels, self.ids)
            return scale * image_f @ text_f.T
        return self.model(pixel_values=pixels, **self.ids).logits_per_image


def own_layer(source: str, layer: int, sublayer: str):
    """The explained module addressed in the model its library loaded, and pytorch-grad-cam's reshape
    of its tokens to (B, D, rows, cols) (a ResNet stage is already a grid)."""
    model = own_model(source).model
    if source.startswith("local-dir:"):
        return getattr(model.visual, f"layer{layer}"), None
    cfg = model.config.vision_config
    side, prefix = cfg.image_size // cfg.patch_size, 0 if model.config.model_type == "siglip" else 1
    module = model.vision_model.encoder.layers[layer - 1].get_submodule(sublayer)
    return module, lambda x: x[:, prefix:].reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2)


@pytest.mark.parametrize("source,layer,sublayer", [
    (str(CLIP_DIR), 2, "self_attn.v_proj"), (str(SIGLIP_DIR), 1, "self_attn.v_proj"), (f"local-dir:{RN_DIR}", 4, "output"),
])
def test_grad_cam_on_each_trained_shapes_model_equals_pytorch_grad_cam(source, layer, sublayer):
    """On the trained model of each family (real weights, biases and norms), Grad-CAM through
    clipcam equals pytorch-grad-cam's own pipeline on the model its library loads from the same
    files: raw, unnormalised maps, each prompt with its own backward."""
    prompts = ["a photo of a red circle.", "a photo of a blue square.", "a photo of a green triangle."]
    image = Image.fromarray(two_objects())
    res = load_explainer(source, device="cpu").explain(image, prompts, layer=layer, sublayer=sublayer, method="gradcam")
    wrapper = OwnLogits(source, prompts)
    pixels = own_model(source).preprocess(image)
    module, reshape = own_layer(source, layer, sublayer)
    want = []
    with pgc.GradCAM(model=wrapper, target_layers=[module], reshape_transform=reshape) as cam:
        for k in range(len(prompts)):
            cam(input_tensor=pixels.clone().requires_grad_(True), targets=[lambda out, k=k: out[k]])
            acts = cam.activations_and_grads.activations[0].numpy()
            grads = cam.activations_and_grads.gradients[0].numpy()
            want.append(np.maximum(cam.get_cam_image(pixels, None, None, acts, grads, eigen_smooth=False), 0)[0])
    np.testing.assert_allclose(res.logits, wrapper(pixels)[0].detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.grid_maps, np.stack(want), rtol=1e-4, atol=1e-6 * max(1.0, np.abs(want).max()))
    assert all(m.max() > 0 for m in want), "each prompt's map must show something on a trained model"

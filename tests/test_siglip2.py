"""SigLIP 2's variable-resolution (NaFlex) variant, transformers' Siglip2Model: a tiny seeded model
saved with its Siglip2Processor and loaded through the hub's path, checked against the model's own
forward, pytorch-grad-cam's Grad-CAM and Score-CAM pipelines, the processor's own grids and
pixels, and a slow spelled-out LeGrad through the pooling head with the padding masked."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
from conftest import PROMPTS, noise_image
from PIL import Image
from slowref import apply_target
from transformers import AutoImageProcessor, AutoTokenizer, Siglip2ImageProcessor
from transformers.models.siglip2.image_processing_siglip2 import convert_image_to_patches, pad_along_first_dim

from clipcam import load_explainer
from clipcam.geometry import CropGeometry, naflex_size
from clipcam.methods.cam import normalize_maps
from clipcam.testing import model_folder, tiny_model
from clipcam.testing.reference import own_model

SIZES = [(70, 30), (30, 70), (41, 41), (200, 13), (13, 90)]  # (W, H): wide, tall, square, extreme


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return model_folder(tiny_model("siglip2", tmp_path_factory.mktemp("siglip2"), seed=35))


@pytest.fixture(scope="module")
def ex(model_dir):
    return load_explainer(str(model_dir), device="cpu")


class Reference:
    """Siglip2Model used the way its documentation does, without clipcam: the processor's outputs,
    the tokenizer padded to 64 tokens (input_ids only: SigLIP 2 was trained without a text mask)."""

    def __init__(self, ex, model_dir, image, prompts):
        self.model = own_model(str(model_dir)).model  # transformers' own loading, from the saved folder
        self.processor = AutoImageProcessor.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.ids = tokenizer(list(prompts), padding="max_length", max_length=64, truncation=True,
                             return_tensors="pt")["input_ids"]
        out = self.processor(images=image, return_tensors="pt")
        self.pixels, self.mask, self.shapes = out["pixel_values"], out["pixel_attention_mask"], out["spatial_shapes"]
        self.rows, self.cols = (int(v) for v in self.shapes[0])
        self.p = self.processor.patch_size

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, N, 3·p·p) patches of this image (or masked copies) → logits_per_image (B, K)."""
        b = pixel_values.shape[0]
        return self.model(input_ids=self.ids, pixel_values=pixel_values, pixel_attention_mask=self.mask.expand(b, -1),
                          spatial_shapes=self.shapes.expand(b, -1)).logits_per_image

    def image(self) -> torch.Tensor:
        """The squashed, normalised image (1, 3, H', W') the patches were cut from."""
        real = self.pixels[0, :self.rows * self.cols]
        return real.reshape(self.rows, self.cols, self.p, self.p, 3).permute(4, 0, 2, 1, 3).reshape(
            1, 3, self.rows * self.p, self.cols * self.p)

    def patch(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H', W') → padded patches (B, N, 3·p·p) with transformers' own functions."""
        n = self.pixels.shape[1]
        return torch.stack([pad_along_first_dim(convert_image_to_patches(im, self.p), n)[0] for im in images])


def test_loads_as_its_own_family(ex):
    assert ex.family == "siglip2-naflex" and ex.adapter.prob_kind == "sigmoid"
    assert ex.adapter.tokenizer.__class__.__name__ == "Siglip2Tokenizer"
    assert ex.adapter.context_length == 64
    assert ex.grid == ex.adapter.geometry((500, 500)).grid == (6, 6)  # a square image's grid (48 patches at most)


@pytest.mark.parametrize("size", SIZES)
def test_logits_equal_siglip2s_own_forward(ex, model_dir, size):
    image = noise_image(*size, seed=1)
    res = ex.explain(image, PROMPTS)
    ref = Reference(ex, model_dir, image, PROMPTS)
    with torch.no_grad():
        want = ref.logits(ref.pixels)[0].numpy()
    np.testing.assert_allclose(res.logits, want, rtol=1e-5, atol=1e-5)
    assert res.prob_kind == "sigmoid"
    np.testing.assert_allclose(res.probs, 1 / (1 + np.exp(-res.logits.astype(np.float64))), rtol=1e-6)
    assert int(ref.mask.sum()) == ref.rows * ref.cols <= ref.pixels.shape[1] == 48


@pytest.mark.parametrize("size", SIZES)
def test_maps_cover_the_whole_image_on_its_own_grid(ex, model_dir, size):
    """No crop: no NaN anywhere; the grid is the processor's spatial_shapes for this image, wide
    for a wide image and tall for a tall one."""
    image = noise_image(*size, seed=2)
    res = ex.explain(image, PROMPTS, layer=1)
    ref = Reference(ex, model_dir, image, PROMPTS)
    assert res.grid_maps.shape == (3, ref.rows, ref.cols) and res.geometry.grid == (ref.rows, ref.cols)
    assert res.image_maps.shape == (3, size[1], size[0]) and not np.isnan(res.image_maps).any()
    assert res.geometry.crop_box() == pytest.approx((0, 0, size[0], size[1]))
    w, h = size
    assert (ref.cols > ref.rows) == (w > h) and (ref.cols < ref.rows) == (w < h)
    assert np.abs(res.grid_maps).max() > 0


class Pixels(torch.nn.Module):
    """The model as the squashed image (B, 3, H', W') → logits (B, K): transformers' own patching
    and padding inside, so pytorch-grad-cam's Score-CAM masks the image in pixel space."""

    def __init__(self, ref):
        super().__init__()
        self.ref, self.model = ref, ref.model  # the model as a submodule: pytorch-grad-cam reads its device

    def forward(self, images):
        return self.ref.logits(self.ref.patch(images))


@pytest.mark.parametrize("size", [(70, 30), (30, 70)])
@pytest.mark.parametrize("target", ["logit", "log_softmax"])
def test_grad_cam_equals_pytorch_grad_cam_raw(ex, model_dir, size, target):
    """pytorch-grad-cam's full pipeline from the squashed image, with a reshape transform that drops
    the padding tokens, compared on raw values: the token mean must run over the real tokens only."""
    image = noise_image(*size, seed=3)
    ref = Reference(ex, model_dir, image, PROMPTS)
    rows, cols = ref.rows, ref.cols
    reshape = lambda x: (x[0] if isinstance(x, tuple) else x)[:, :rows * cols].reshape(1, rows, cols, -1).permute(0, 3, 1, 2)  # noqa: E731
    blocks = ref.model.vision_model.encoder.layers
    for layer, module, sublayer in [(1, blocks[0].mlp.fc1, "mlp.fc1"), (2, blocks[1].self_attn.v_proj, "self_attn.v_proj"),
                                    (2, blocks[1], "block"), (1, blocks[0].layer_norm1, "layer_norm1")]:
        res = ex.explain(image, PROMPTS, layer=layer, sublayer=sublayer, target=target)
        want = []
        with pgc.GradCAM(model=Pixels(ref), target_layers=[module], reshape_transform=reshape) as cam:
            for k in range(len(PROMPTS)):
                def score(out, k=k):
                    return (torch.log_softmax(out, dim=-1) if target == "log_softmax" else out)[k]
                cam(input_tensor=ref.image().clone().requires_grad_(True), targets=[score])
                acts = cam.activations_and_grads.activations[0].numpy()
                grads = cam.activations_and_grads.gradients[0].numpy()
                raw = cam.get_cam_image(ref.image(), None, None, acts, grads, eigen_smooth=False)
                want.append(np.maximum(raw, 0)[0])
        want = np.stack(want)
        np.testing.assert_allclose(res.grid_maps, want, rtol=1e-4, atol=1e-6 * max(1.0, np.abs(want).max()))
        assert np.abs(res.grid_maps).max() > 0


def test_masking_the_image_equals_masking_the_patches(ex, model_dir):
    image = noise_image(70, 30, seed=4)
    ref = Reference(ex, model_dir, image, PROMPTS)
    inputs = ex.adapter.preprocess(image)
    assert ex.adapter.input_size(inputs) == tuple(ref.image().shape[-2:])
    torch.testing.assert_close(ref.patch(ref.image()), ref.pixels, rtol=0, atol=0)  # the unpatching is right
    masks = torch.rand(5, 1, *ref.image().shape[-2:], generator=torch.Generator().manual_seed(0))
    masked = ex.adapter.mask_inputs(inputs, masks)
    torch.testing.assert_close(masked.pixel_values, ref.patch(ref.image() * masks), rtol=0, atol=0)
    assert masked.pixel_attention_mask.shape == (5, ref.pixels.shape[1]) and masked.spatial_shapes.shape == (5, 2)
    with torch.no_grad():
        torch.testing.assert_close(ex.adapter.logits(ex.adapter.image_features(masked), ex.adapter.text_embeddings(PROMPTS)[0]),
                                   Pixels(ref)(ref.image() * masks), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer,sublayer", [(1, "self_attn.v_proj"), (2, "layer_norm2")])
def test_score_cam_equals_pytorch_grad_cam(ex, model_dir, layer, sublayer):
    """Score-CAM against the package's ScoreCAM masking the squashed image in pixel space (its
    masks, its batches, its softmax), normalised as the package returns it."""
    image = noise_image(30, 70, seed=5)
    ref = Reference(ex, model_dir, image, PROMPTS)
    rows, cols = ref.rows, ref.cols
    reshape = lambda x: x[:, :rows * cols].reshape(x.shape[0], rows, cols, -1).permute(0, 3, 1, 2)  # noqa: E731
    module = ref.model.vision_model.encoder.layers[layer - 1].get_submodule(sublayer)
    res = ex.explain(image, PROMPTS, layer=layer, sublayer=sublayer, method="scorecam")
    with pgc.ScoreCAM(model=Pixels(ref), target_layers=[module], reshape_transform=reshape) as cam:
        cam.batch_size = 32
        for k in range(len(PROMPTS)):
            want = cam(input_tensor=ref.image().clone(), targets=[lambda out, k=k: out[k]])[0]  # (H', W'), min-max
            ours = cv2.resize(normalize_maps(res.grid_maps[k][None])[0], want.shape[::-1], interpolation=cv2.INTER_LINEAR)
            np.testing.assert_allclose(normalize_maps(ours[None])[0], want, atol=1e-4)
    assert res.grid_maps.shape == (3, rows, cols) and res.grid_maps.any()


@pytest.mark.parametrize("start,target", [(1, "logit"), (2, "contrast")])
def test_legrad_reads_the_pooling_heads_attention_with_the_padding_masked(ex, model_dir, start, target):
    """LeGrad through the pooling head, as the authors define it for SigLIP, with the head given the
    padding mask as the model gives it: each layer's tokens (all N, padding included) through the
    head written out, padding keys at -inf, the gradient of the layer's score on the head's weights."""
    image = noise_image(70, 30, seed=6)
    res = ex.explain(image, PROMPTS, layer=start, method="legrad", target=target)
    ref = Reference(ex, model_dir, image, PROMPTS)
    model, real = ref.model, ref.rows * ref.cols
    with torch.no_grad():
        text = model.get_text_features(input_ids=ref.ids).pooler_output
        text = text / text.norm(dim=-1, keepdim=True)
    head = model.vision_model.head
    attn = head.attention
    d, heads = attn.embed_dim, attn.num_heads
    wq, wk, wv = attn.in_proj_weight.split(d)
    bq, bk, bv = attn.in_proj_bias.split(d)
    padding = ref.mask[0] == 0  # (N,)
    want = []
    for kk in range(len(PROMPTS)):
        with torch.enable_grad():
            out = model.vision_model(pixel_values=ref.pixels.clone().requires_grad_(True), pixel_attention_mask=ref.mask,
                                     spatial_shapes=ref.shapes, output_hidden_states=True)
            total = torch.zeros(ref.pixels.shape[1])
            for hidden in out.hidden_states[start:]:  # hidden_states[l] is block l's output, (1, N, D)
                q, k, v = head.probe[0, 0] @ wq.T + bq, hidden[0] @ wk.T + bk, hidden[0] @ wv.T + bv
                weights, outs = [], []
                for h in range(heads):
                    sl = slice(h * d // heads, (h + 1) * d // heads)
                    scores = (k[:, sl] @ q[sl] / (d // heads) ** 0.5).masked_fill(padding, float("-inf"))
                    w = torch.softmax(scores, dim=0)  # (N,), zero on the padding
                    weights.append(w)
                    outs.append(w @ v[:, sl])
                attended = attn.out_proj(torch.cat(outs))[None, None]
                pooled = (attended + head.mlp(head.layernorm(attended)))[:, 0]
                np.testing.assert_allclose(pooled.detach().numpy(), head(hidden, ref.mask).detach().numpy(),
                                           rtol=1e-5, atol=1e-6)  # the model's own masked head
                logits = model.logit_scale.exp() * (text @ (pooled[0] / pooled[0].norm())) + model.logit_bias
                grads = torch.autograd.grad(apply_target(logits, target)[kk], weights, retain_graph=True)
                total += sum(g.clamp(min=0) for g in grads) / heads
        want.append(total[:real].reshape(ref.rows, ref.cols).numpy())
    np.testing.assert_allclose(res.grid_maps, np.stack(want), rtol=1e-4, atol=1e-7)
    assert res.grid_maps.any()


def test_nothing_is_dead_and_the_padding_never_reaches_the_score(ex):
    """Every sublayer of the last layer has a gradient on the real tokens (the pooling head reads
    them all), and exactly none on the padding tokens (masked out of attention and head)."""
    image = noise_image(70, 30, seed=7)
    inputs, (text, _) = ex.adapter.preprocess(image), ex.adapter.text_embeddings(PROMPTS)
    real = int(inputs.pixel_attention_mask.sum())
    assert real < inputs.pixel_values.shape[1]
    for sublayer in ex.sublayers:
        module = ex.adapter.module(ex.num_layers, sublayer)
        acts: list[torch.Tensor] = []

        def replace(m, a, out, acts=acts):
            leaf = (out[0] if isinstance(out, tuple) else out).detach().requires_grad_(True)
            acts.append(leaf)
            return (leaf, *out[1:]) if isinstance(out, tuple) else leaf

        hook = module.register_forward_hook(replace)
        try:
            with torch.enable_grad():
                logits = ex.adapter.logits(ex.adapter.image_features(inputs), text)[0]
                (grad,) = torch.autograd.grad(logits.sum(), acts[0])
        finally:
            hook.remove()
        assert float(grad[0, :real].abs().max()) > 0 and float(grad[0, real:].abs().max()) == 0, sublayer
        assert ex.adapter.dead_reason(ex.num_layers, sublayer) is None


@pytest.mark.parametrize("method", ["chefer", "gradeclip", "gradeclip-authors"])
def test_class_token_methods_are_refused_with_a_sentence(ex, method):
    with pytest.raises(ValueError) as err:
        ex.explain(noise_image(20, 20), PROMPTS, method=method)
    assert str(err.value).endswith("pick Grad-CAM or another method that this model supports.")
    assert "a class token" in str(err.value) and "SigLIP 2 NaFlex" in str(err.value) and method not in ex.methods


def test_sweep_gives_every_layer_on_the_images_grid(ex):
    image = noise_image(30, 70, seed=8)
    sweep = ex.sweep(image, PROMPTS, sublayer="mlp.fc1")
    rows, cols = sweep.geometry.grid
    assert rows > cols and sweep.layer_maps.shape == (2, 3, rows, cols) and not np.isnan(sweep.layer_image_maps).any()
    single = ex.explain(image, PROMPTS, layer=2, sublayer="mlp.fc1")
    np.testing.assert_allclose(sweep.layer_maps[1], single.grid_maps, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------- geometry

@pytest.mark.parametrize("patch,budget", [(16, 256), (16, 576), (14, 1024), (4, 48)])
def test_geometry_equals_the_processors_grid(patch, budget):
    """naflex_size, written from the processor's settings, against the processor's spatial_shapes."""
    proc = Siglip2ImageProcessor(patch_size=patch, max_num_patches=budget)
    rng = np.random.default_rng(patch * budget)
    sizes = [(640, 480), (480, 640), (451, 300), (1000, 230), (224, 224), (37, 900), (1, 1), (3000, 20)]
    sizes += [tuple(int(v) for v in rng.integers(1, 1200, 2)) for _ in range(12)]
    for size in sizes:
        out = proc(images=Image.new("RGB", size), return_tensors="pt")
        rows, cols = (int(v) for v in out["spatial_shapes"][0])
        geo = CropGeometry.naflex(size, patch, budget)
        assert geo.grid == (rows, cols) and naflex_size(size, patch, budget) == (cols * patch, rows * patch), size
        assert int(out["pixel_attention_mask"].sum()) == rows * cols <= budget
        assert geo.offset == (0, 0) and geo.crop == geo.resized
    if (patch, budget) == (16, 256):  # the README's examples
        assert CropGeometry.naflex((640, 480), 16, 256).grid == (14, 18)
        assert CropGeometry.naflex((1000, 230), 16, 256).grid == (8, 32)


@pytest.mark.parametrize("size", [(640, 480), (300, 451), (1000, 230), (100, 150), (37, 300)])
def test_marker_box_lands_in_its_cell(size):
    """A white box drawn where the geometry says cell (r, c) lies lands in patch (r, c) of the
    processor's own output."""
    patch = 16
    proc = Siglip2ImageProcessor(patch_size=patch, max_num_patches=256)
    geo = CropGeometry.naflex(size, patch, 256)
    rows, cols = geo.grid
    left, top, right, bottom = geo.crop_box()
    cw, ch = (right - left) / cols, (bottom - top) / rows
    for r, c in [(0, 0), (rows // 2, cols // 3), (rows - 1, cols - 1), (rows - 1, 0)]:
        box = (int(round(left + (c + 0.3) * cw)), int(round(top + (r + 0.3) * ch)),
               int(round(left + (c + 0.7) * cw)), int(round(top + (r + 0.7) * ch)))
        box = (box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1))
        img = Image.new("RGB", size, "black")
        img.paste(Image.new("RGB", (box[2] - box[0], box[3] - box[1]), "white"), box[:2])
        out = proc(images=img, return_tensors="pt")
        cells = out["pixel_values"][0, :rows * cols].mean(dim=-1).reshape(rows, cols)
        assert np.unravel_index(int(cells.argmax()), (rows, cols)) == (r, c), (size, r, c)


def test_peak_cell_lands_on_its_pixels():
    geo = CropGeometry.naflex((640, 300), 16, 256)
    rows, cols = geo.grid
    grid = np.zeros((1, rows, cols), np.float32)
    grid[0, 2, 5] = 1.0
    image_map = geo.grid_to_image(grid)[0]
    assert image_map.shape == (300, 640) and not np.isnan(image_map).any()
    y, x = np.unravel_index(np.argmax(image_map), image_map.shape)
    assert 5 * 640 / cols <= x + 0.5 <= 6 * 640 / cols and 2 * 300 / rows <= y + 0.5 <= 3 * 300 / rows


def test_the_app_offers_what_the_family_runs(model_dir):
    """The app's method list and starting settings follow the family: LeGrad first (no class token
    for Chefer), and one sentence for the methods it cannot run."""
    from clipcam.app.choices import method_choices, model_defaults

    choices, why = method_choices(str(model_dir))
    assert "legrad" in [value for _, value in choices] and "chefer" not in [value for _, value in choices]
    assert why.endswith("which SigLIP 2 NaFlex (Hugging Face) models do not have.") and "a class token" in why
    assert model_defaults(str(model_dir), 2) == (1, "mlp.fc1", "logit", "legrad")

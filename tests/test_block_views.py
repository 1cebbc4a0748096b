"""The adapters' BlockViews run each block exactly as the model does, and token_readout reads the
class token out as the image embedding: the pieces dense maps and the decomposition rebuild from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipcam.explainer import load_explainer
from clipcam.testing import tiny_model

VIT_FAMILIES = ("clip", "siglip", "openclip-vit")


def rerun(view, x: torch.Tensor) -> torch.Tensor:
    """The block's forward written out from its view, independently of the adapter: (B, T, D)."""
    q, k, v = view.qkv(view.ln_1(x))
    b, t, d = q.shape
    split = lambda z: z.reshape(b, t, view.heads, d // view.heads).transpose(1, 2)  # noqa: E731
    probs = torch.softmax(split(q) @ split(k).transpose(-1, -2) * (d // view.heads) ** -0.5, dim=-1)
    attended = (probs @ split(v)).transpose(1, 2).reshape(b, t, d)
    y = x + view.ls_1(view.out_proj(attended))
    return y + view.ls_2(view.mlp(view.ln_2(y)))


@pytest.mark.parametrize("family", VIT_FAMILIES)
def test_block_views_rerun_every_block(family: str, tmp_path) -> None:
    explainer = load_explainer(tiny_model(family, tmp_path / family, seed=4), device="cpu")
    adapter = explainer.adapter
    views = adapter.block_views(1)
    assert len(views) == adapter.num_layers
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    out = lambda m, args, result: seen.append((args[0], result[0] if isinstance(result, tuple) else result))  # noqa: E731
    handles = [v.module.register_forward_hook(out) for v in views]
    try:
        with torch.no_grad():
            adapter.image_features(adapter.preprocess(_image()))
    finally:
        for h in handles:
            h.remove()
    assert len(seen) == len(views)
    for view, (x, y) in zip(views, seen):
        with torch.no_grad():
            torch.testing.assert_close(rerun(view, x), y, rtol=1e-4, atol=1e-5)
    assert len(adapter.block_views(adapter.num_layers)) == 1


def _image() -> Image.Image:
    """A plain test picture: a colour ramp."""
    ramp = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype("uint8")
    return Image.fromarray(ramp)


@pytest.mark.parametrize("family", ("clip", "openclip-vit"))
def test_token_readout_of_the_class_token_is_the_image_embedding(family: str, tmp_path) -> None:
    explainer = load_explainer(tiny_model(family, tmp_path / family, seed=5), device="cpu")
    adapter = explainer.adapter
    last = adapter.block_views(adapter.num_layers)[0].module
    seen: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda m, a, r: seen.append(r[0] if isinstance(r, tuple) else r))
    try:
        with torch.no_grad():
            features = adapter.image_features(adapter.preprocess(_image()))
    finally:
        handle.remove()
    with torch.no_grad():
        read = adapter.token_readout(seen[0])  # (1, T, P)
    assert read.shape[1] == adapter.prefix + adapter.grid[0] * adapter.grid[1]
    torch.testing.assert_close(read[:, 0], features, rtol=1e-4, atol=1e-5)


def test_siglip_refuses_a_token_readout(tmp_path) -> None:
    adapter = load_explainer(tiny_model("siglip", tmp_path / "s", seed=1), device="cpu").adapter
    with pytest.raises(ValueError, match="do not read their embedding from one token"):
        adapter.token_readout(torch.zeros(1, 4, 8))


def test_a_resnet_has_no_block_views(tmp_path) -> None:
    adapter = load_explainer(tiny_model("openclip-rn", tmp_path / "rn", seed=1), device="cpu").adapter
    with pytest.raises(ValueError, match="no transformer blocks"):
        adapter.block_views(1)

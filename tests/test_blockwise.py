"""Backpropagation one block at a time (clipcam.passes.blockwise) gives the maps of one backward through
the whole graph, on every family whose adapter offers its blocks."""

import gc
import weakref

import numpy as np
import pytest
import torch

import clipcam.passes.common as passes_common
from clipcam import load_explainer
from clipcam.passes.common import goes_blockwise
from clipcam.testing import tiny_model

from conftest import PROMPTS, noise_image


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("blockwise")
    return {
        "hf-clip": load_explainer(tiny_model("clip", root / "clip", seed=2, layers=4), device="cpu"),
        "siglip": load_explainer(tiny_model("siglip", root / "siglip", seed=3, layers=4), device="cpu"),
        "siglip2": load_explainer(tiny_model("siglip2", root / "siglip2", seed=8, layers=4), device="cpu"),
        "open_clip-vit": load_explainer(tiny_model("openclip-vit", root / "ocvit", seed=4), device="cpu"),
        "open_clip-timm-vit": load_explainer(tiny_model("openclip-timm-vit", root / "octimm", seed=6), device="cpu"),
    }


CLASS_TOKEN = ("hf-clip", "open_clip-vit")
CASES = [*[(family, method) for family in ("hf-clip", "siglip", "siglip2", "open_clip-vit", "open_clip-timm-vit")
           for method in ("gradcam", "hirescam")],
         *[(family, method) for family in CLASS_TOKEN for method in ("chefer", "gradeclip")],
         *[(family, "legrad") for family in ("hf-clip", "siglip", "siglip2", "open_clip-vit")]]


@pytest.mark.parametrize("family,method", CASES)
def test_blockwise_sweep_equals_one_backward(families, monkeypatch, family, method):
    ex = families[family]
    assert method in ex.methods
    image, prompts = noise_image(48, 40, seed=5), PROMPTS + ["a photo of a spoon"]
    sublayer = ex.sublayers[1]  # an attention projection or the attention block: upstream of the rest
    monkeypatch.setattr(passes_common, "DIRECT_BLOCKS", 10_000)
    assert not goes_blockwise(ex.adapter, 1)
    whole = ex.sweep(image, prompts, method=method, sublayer=sublayer, target="log_softmax")
    monkeypatch.setattr(passes_common, "DIRECT_BLOCKS", 0)
    assert goes_blockwise(ex.adapter, ex.num_layers)
    blockwise = ex.sweep(image, prompts, method=method, sublayer=sublayer, target="log_softmax")
    picked = ex.sweep(image, prompts, method=method, sublayer=sublayer, target="log_softmax", layers=[2, ex.num_layers])
    monkeypatch.setattr(passes_common, "GRADIENT_BYTES", 1)  # and one prompt per backward
    monkeypatch.setattr(passes_common, "BLOCK_GRADIENT_BYTES", 1)
    grouped = ex.sweep(image, prompts, method=method, sublayer=sublayer, target="log_softmax")
    assert np.abs(whole.layer_maps).max() > 0
    # nn.MultiheadAttention takes its fused fast path where no input requires grad: the same logits up to rounding
    np.testing.assert_allclose(blockwise.logits, whole.logits, rtol=1e-5, atol=1e-5)
    scale = np.abs(whole.layer_maps).max()
    for other in (blockwise, grouped):
        np.testing.assert_allclose(other.layer_maps, whole.layer_maps, rtol=1e-4, atol=1e-6 * scale)
    np.testing.assert_allclose(picked.layer_maps, whole.layer_maps[[1, -1]], rtol=1e-4, atol=1e-6 * scale)


class SavedBytes:
    """The bytes of the tensors that autograd graphs keep for backward, live and at their peak:
    each saved tensor is packed into a holder whose release (with its graph) is counted."""

    class Holder:
        def __init__(self, tensor):
            self.tensor = tensor

    def __init__(self):
        self.live = self.peak = 0

    def pack(self, tensor):
        holder = self.Holder(tensor.detach())  # detached: an op's own output would form a cycle through C++
        size = tensor.numel() * tensor.element_size()
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(holder, self.release, size)
        return holder

    def release(self, size):
        self.live -= size

    def unpack(self, holder):
        return holder.tensor


@pytest.mark.parametrize("method", ["gradcam", "chefer"])
def test_blockwise_holds_one_block_of_graph(families, monkeypatch, method):
    """What autograd keeps for backward: a sweep of 4 layers one block at a time holds under half
    of what one backward through the whole graph holds."""
    ex = families["hf-clip"]
    image, prompts = noise_image(48, 40, seed=6), PROMPTS
    peaks = {}
    for name, direct in (("direct", 10_000), ("blockwise", 0)):
        monkeypatch.setattr(passes_common, "DIRECT_BLOCKS", direct)
        saved = SavedBytes()
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
            ex.sweep(image, prompts, method=method, sublayer="mlp.fc1")
        gc.collect()
        assert saved.live == 0  # every graph let go
        peaks[name] = saved.peak
    assert peaks["blockwise"] < 0.5 * peaks["direct"], peaks


@pytest.mark.parametrize("method", ["gradcam", "chefer"])
def test_blockwise_reports_each_layer_and_stops_there(families, monkeypatch, method):
    """A block-by-block pass calls progress once per layer it goes back through, so the app's time
    limit and closed pages stop it between layers, with no hook left behind."""
    from clipcam.app.server import Deadline, Stopped

    ex = families["hf-clip"]
    monkeypatch.setattr(passes_common, "DIRECT_BLOCKS", 0)
    image = noise_image(48, 40, seed=7)
    seen = []
    ex.sweep(image, PROMPTS, method=method, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    calls = []
    deadline = Deadline(60, alive=lambda: len(calls) < 2)
    with pytest.raises(Stopped):
        ex.sweep(image, PROMPTS, method=method, progress=deadline.progress(lambda done, total: calls.append(done)))
    assert calls == [1, 2]  # stopped at the third layer back, before the last two
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in ex.model.modules())


def live_tensors() -> int:
    gc.collect()
    return sum(type(o) is torch.Tensor or type(o) is torch.nn.Parameter for o in gc.get_objects())


@pytest.mark.parametrize("family", ["hf-clip", "siglip"])
def test_blockwise_leaves_no_tensor_behind(families, monkeypatch, family):
    """Sweeps one block at a time leave nothing alive: counting a block's saved tensors once
    leaked the graph of every op that saves its own output (a cycle through autograd's C++)."""
    ex = families[family]
    monkeypatch.setattr(passes_common, "DIRECT_BLOCKS", 0)
    image = noise_image(48, 40, seed=8)
    for method in ("gradcam", "legrad"):
        ex.sweep(image, PROMPTS, method=method)  # warm: text embeddings cached
    before = live_tensors()
    for _ in range(3):
        for method in ("gradcam", "legrad"):
            ex.sweep(image, PROMPTS, method=method)
    assert live_tensors() == before

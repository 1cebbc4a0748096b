"""Score-CAM from one set of masked forwards for all prompts, against pytorch-grad-cam's ScoreCAM
(which runs them once per prompt)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PROMPTS
from test_explain import as_reference

from clipcam.testing.reference import reference_grad_cam


@pytest.mark.parametrize("layer,sublayer,target", [(1, "mlp.fc1", "logit"), (2, "self_attn.v_proj", "log_softmax"),
                                                   (3, "block", "contrast")])
def test_matches_pytorch_grad_cam(explainer5, wide_image, layer, sublayer, target):
    seen = []
    res = explainer5.explain(wide_image, PROMPTS, layer=layer, sublayer=sublayer, method="scorecam", target=target,
                             progress=lambda done, total: seen.append((done, total)))
    ref = reference_grad_cam(explainer5.model, explainer5.adapter.tokenizer, explainer5.adapter.image_processor,
                             wide_image, PROMPTS, layer, sublayer, target=target, method="scorecam")
    assert res.method == "scorecam" and not res.dead, "no gradient is used, so no sublayer is dead"
    np.testing.assert_allclose(as_reference(res.grid_maps, 40), ref, atol=1e-4, rtol=0)
    assert (res.grid_maps >= 0).all() and np.isfinite(res.grid_maps).all() and res.grid_maps.any()
    assert not np.allclose(res.grid_maps[0], res.grid_maps[1]), "it depends on the prompt"
    channels = 4 * 32 if sublayer == "mlp.fc1" else 32
    assert seen[-1] == (channels, channels) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_sweep_reports_progress_over_all_layers(explainer5, wide_image):
    seen = []
    sweep = explainer5.sweep(wide_image, PROMPTS, sublayer="self_attn.v_proj", method="scorecam",
                             progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3 * 32, 3 * 32)
    single = explainer5.explain(wide_image, PROMPTS, layer=2, sublayer="self_attn.v_proj", method="scorecam")
    np.testing.assert_allclose(sweep.layer_maps[1], single.grid_maps, rtol=1e-5, atol=1e-7)
    assert sweep.dead_reasons == (None, None, None)

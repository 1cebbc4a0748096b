"""Word relevance (clipcam.words) on every family, against computations written here without
clipcam's helpers: a port of Chefer et al.'s CLIP notebook (``interpret``: the text blocks'
attention probabilities and their gradients, R ← R + Ā R from the start layer, the end token's
row), Grad-ECLIP's text notebook with the model's own heads, and gradient × input, each with one
full backward per prompt through the family's own forward (eager attention for transformers, the
notebook's explicit attention for open_clip)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import noise_image

from clipcam import load_explainer
from clipcam.testing import model_folder, tiny_model
from clipcam.testing.reference import own_model

WORD_PROMPTS = ["a photo of a cat.", "a red zebra with a blue square.", "an astronaut"]


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    return model_folder(tiny_model("siglip", tmp_path_factory.mktemp("wsiglip"), seed=3))


@pytest.fixture(scope="module")
def oc_dir(tmp_path_factory):
    return model_folder(tiny_model("openclip-vit", tmp_path_factory.mktemp("wocvit"), seed=4))


@pytest.fixture(scope="module")
def rn_dir(tmp_path_factory):
    return model_folder(tiny_model("openclip-rn", tmp_path_factory.mktemp("wocrn"), seed=5))


@pytest.fixture(scope="module")
def custom_dir(tmp_path_factory):
    """open_clip's CustomTextCLIP with a bidirectional TextTransformer pooled at the last position
    (the text-tower layout of open_clip's SigLIP models)."""
    return model_folder(tiny_model("openclip-custom-text", tmp_path_factory.mktemp("woccustom"), seed=6))


@pytest.fixture(scope="module")
def families(explainer, tiny_dir, siglip_dir, oc_dir, rn_dir, custom_dir):
    return {
        "open_clip-custom": (load_explainer(f"local-dir:{custom_dir}", device="cpu"), custom_dir),
        "hf-clip": (explainer, tiny_dir),
        "siglip": (load_explainer(str(siglip_dir), device="cpu"), siglip_dir),
        "open_clip": (load_explainer(f"local-dir:{oc_dir}", device="cpu"), oc_dir),
        "open_clip-resnet": (load_explainer(f"local-dir:{rn_dir}", device="cpu"), rn_dir),
    }


def apply_target(logits, target):
    if target == "log_softmax":
        return torch.log_softmax(logits, dim=0)
    if target == "contrast":
        return logits - logits.mean()
    if target == "negated":
        return -logits
    return logits


class HFRef:
    """transformers' own CLIPModel / SiglipModel forward with eager attention; the text blocks'
    attention probabilities come from output_attentions, q/k/v and the input of out_proj from hooks."""

    def __init__(self, ex, model_dir):
        from transformers import CLIPModel, SiglipModel

        cls = SiglipModel if ex.family == "siglip" else CLIPModel
        self.model = cls.from_pretrained(model_dir, attn_implementation="eager").eval()
        self.ex = ex
        self.heads = self.model.config.text_config.num_attention_heads

    def run(self, image, prompts, alpha=1.0):
        tok = self.ex.adapter.tokenizer
        if self.ex.family == "siglip":
            inputs = tok(list(prompts), padding="max_length", max_length=16, truncation=True, return_tensors="pt")
            inputs.pop("attention_mask", None)
            ids = inputs["input_ids"]
            pooled = [ids.shape[1] - 1] * len(prompts)
        else:
            inputs = tok(list(prompts), padding=True, return_tensors="pt")
            ids = inputs["input_ids"]
            eos = self.model.config.text_config.eos_token_id
            pooled = [int(row.tolist().index(eos)) for row in ids]
        pixels = self.ex.adapter.image_processor(images=image, return_tensors="pt")["pixel_values"]
        blocks = self.model.text_model.encoder.layers
        emb_leaf, found = [], {"q": [], "k": [], "v": [], "o": []}
        handles = []

        def leaf_hook(m, a, out):
            leaf = (out.detach() * alpha).requires_grad_(True)
            emb_leaf.append(leaf)
            return leaf

        handles.append(self.model.text_model.embeddings.token_embedding.register_forward_hook(leaf_hook))
        for b in blocks:
            for name in ("q", "k", "v"):
                handles.append(getattr(b.self_attn, f"{name}_proj").register_forward_hook(
                    lambda m, a, out, name=name: found[name].append(out)))
            handles.append(b.self_attn.out_proj.register_forward_pre_hook(lambda m, a: found["o"].append(a[0])))
        try:
            out = self.model(pixel_values=pixels, output_attentions=True, **inputs)
        finally:
            for h in handles:
                h.remove()
        probs = list(out.text_model_output.attentions)  # each (K, H, T, T)
        return out.logits_per_image[0], ids, pooled, emb_leaf[0], probs, found


class OpenClipRef:
    """The notebook's own text forward (its ResidualAttentionBlock with an explicit softmax), on
    open_clip's weights: attention probabilities and pre-projection outputs are tensors here."""

    def __init__(self, ex, model_dir):
        self.own = own_model(ex.adapter.source)  # open_clip's own loading, from the saved folder
        self.model = self.own.model
        self.ex = ex
        self.tower = getattr(self.model, "text", self.model)  # CustomTextCLIP's TextTransformer, or CLIP itself
        self.heads = self.tower.transformer.resblocks[0].attn.num_heads

    def run(self, image, prompts, alpha=1.0):
        m, tower = self.model, self.tower
        ids = self.own.tokenizer(list(prompts))
        pool = getattr(tower, "pool_type", getattr(m, "text_pool_type", None))
        # argmax: the end-of-text token has the highest id; last: the last (padding) position
        pooled = ids.argmax(dim=-1).tolist() if pool == "argmax" else [ids.shape[1] - 1] * len(prompts)
        emb = (tower.token_embedding(ids) * alpha).detach().requires_grad_(True)
        x = emb + tower.positional_embedding
        found = {"q": [], "k": [], "v": [], "o": []}
        probs_all = []
        kk, t, d = x.shape
        h = self.heads
        mask = tower.attn_mask[:t, :t] if tower.attn_mask is not None else 0.0  # causal, or none (bidirectional)
        for blk in tower.transformer.resblocks:
            y = blk.ln_1(x)
            q, k, v = F.linear(y, blk.attn.in_proj_weight, blk.attn.in_proj_bias).chunk(3, dim=-1)
            found["q"].append(q), found["k"].append(k), found["v"].append(v)
            qh = q.reshape(kk, t, h, d // h).transpose(1, 2) * (d // h) ** -0.5
            kh = k.reshape(kk, t, h, d // h).transpose(1, 2)
            vh = v.reshape(kk, t, h, d // h).transpose(1, 2)
            probs = torch.softmax(qh @ kh.transpose(-1, -2) + mask, dim=-1)  # (K, H, T, T)
            probs_all.append(probs)
            o = (probs @ vh).transpose(1, 2).reshape(kk, t, d)
            found["o"].append(o)
            x = x + blk.attn.out_proj(o)
            x = x + blk.mlp(blk.ln_2(x))
        x = tower.ln_final(x)[torch.arange(kk), pooled]
        proj = tower.text_projection
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
        with torch.no_grad():
            image_f = m.encode_image(self.own.preprocess(image))
        logits = m.logit_scale.exp() * F.normalize(image_f, dim=-1) @ F.normalize(x, dim=-1).T
        return logits[0], ids, pooled, emb, probs_all, found


def reference(name, ex, model_dir):
    return OpenClipRef(ex, model_dir) if name.startswith("open_clip") else HFRef(ex, model_dir)


def ref_chefer(ref, image, prompts, target, start):
    """The notebook's interpret(), text half, one backward per prompt (for the logit target this
    is the notebook's summed one-hot, whose cross terms are zero)."""
    logits, ids, pooled, _, probs, _ = ref.run(image, prompts)
    scores = apply_target(logits, target)
    out = []
    for i in range(len(prompts)):
        blocks = probs[start - 1:]
        t = blocks[0].shape[-1]
        R_text = torch.eye(t, t)
        for blk_probs in blocks:
            grad = torch.autograd.grad(scores[i], [blk_probs], retain_graph=True)[0].detach()[i]
            cam = blk_probs.detach()[i]
            cam = (grad * cam).clamp(min=0).mean(dim=0)
            R_text = R_text + torch.mm(cam, R_text)
        out.append(R_text[pooled[i]])
    return ids, out


def ref_gradeclip(ref, image, prompts, target, start, causal):
    """grad_eclip_text's grad_eclip(): loops over layers, tokens and channels."""
    logits, ids, pooled, _, _, found = ref.run(image, prompts)
    scores = apply_target(logits, target)
    out = []
    for i in range(len(prompts)):
        p = pooled[i]
        t = ids.shape[1]
        seen = list(range(p + 1)) if causal else list(range(t))
        total = [0.0] * t
        for q, k, v, o in list(zip(found["q"], found["k"], found["v"], found["o"]))[start - 1:]:
            grad = torch.autograd.grad(scores[i], [o], retain_graph=True)[0][i, p]  # (D,)
            qn = F.normalize(q[i, p].detach(), dim=-1)
            cos = [float((qn * F.normalize(k[i, j].detach(), dim=-1)).sum()) for j in range(t)]
            lo, hi = min(cos[j] for j in seen), max(cos[j] for j in seen)
            for j in seen:
                term = sum(float(grad[c]) * float(v[i, j, c].detach()) for c in range(v.shape[-1]))
                total[j] += term * (cos[j] - lo) / (hi - lo)
        out.append(torch.relu(torch.tensor(total)))
    return ids, out


def ref_gradinput(ref, image, prompts, target):
    logits, ids, _, emb, _, _ = ref.run(image, prompts)
    scores = apply_target(logits, target)
    out = []
    for i in range(len(prompts)):
        (grad,) = torch.autograd.grad(scores[i], [emb], retain_graph=True)
        out.append((grad[i] * emb[i].detach()).sum(dim=-1))
    return ids, out


def ref_intgrad(ref, image, prompts, target, steps=16):
    """Integrated gradients from a zero embedding, one point of the path and one prompt at a time:
    prompt i's own logit from the scaled forward, the other prompts' from the unscaled one."""
    full = ref.run(image, prompts)[0].detach()
    _, ids, _, emb, _, _ = ref.run(image, prompts)
    totals = [torch.zeros_like(emb[i]) for i in range(len(prompts))]
    for n in range(steps):
        logits, _, _, scaled, _, _ = ref.run(image, prompts, alpha=(n + 0.5) / steps)
        for i in range(len(prompts)):
            mixed = torch.cat([full[:i], logits[i:i + 1], full[i + 1:]])
            (grad,) = torch.autograd.grad(apply_target(mixed, target)[i], [scaled], retain_graph=True)
            totals[i] += grad[i]
    return ids, [(emb[i].detach() * totals[i] / steps).sum(dim=-1) for i in range(len(prompts))]


def kept(name, ex, ids, row_index):
    """The prompt's own positions, from the ids: not a start, end or padding token."""
    row = ids[row_index].tolist()
    if name.startswith("open_clip"):
        return list(range(1, row.index(ex.adapter.tokenizer.eot_token_id)))
    specials = set(ex.adapter.tokenizer.all_special_ids)
    return [j for j, i in enumerate(row) if i not in specials]


FAMILIES = ["hf-clip", "siglip", "open_clip", "open_clip-resnet", "open_clip-custom"]


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("target", ["logit", "log_softmax"])
def test_chefer_text_relevance_equals_the_notebook(name, target, families):
    ex, model_dir = families[name]
    image = noise_image(48, 40, seed=7)
    ref = reference(name, ex, model_dir)
    for start in range(1, ex.adapter.text_num_layers + 1):
        res = ex.explain(image, WORD_PROMPTS, target=target, words="chefer", words_layer=start)
        ids, rows = ref_chefer(ref, image, WORD_PROMPTS, target, start)
        np.testing.assert_allclose(res.logits, ref.run(image, WORD_PROMPTS)[0].detach().numpy(), rtol=1e-5, atol=1e-5)
        for i, row in enumerate(rows):
            expected = row[kept(name, ex, ids, i)].numpy()
            got = res.word_relevance[i].token_relevance
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
            assert expected.max() > 0
    assert ex.explain(image, WORD_PROMPTS, words="chefer").word_relevance.layer == ex.adapter.text_num_layers


@pytest.mark.parametrize("name", FAMILIES)
def test_gradeclip_text_equals_the_slow_loops(name, families):
    ex, model_dir = families[name]
    image = noise_image(40, 48, seed=8)
    ref = reference(name, ex, model_dir)
    for start, target in [(1, "logit"), (2, "contrast")]:
        res = ex.explain(image, WORD_PROMPTS, target=target, words="gradeclip", words_layer=start)
        ids, rows = ref_gradeclip(ref, image, WORD_PROMPTS, target, start, causal=name not in ("siglip", "open_clip-custom"))
        for i, row in enumerate(rows):
            np.testing.assert_allclose(res.word_relevance[i].token_relevance, row[kept(name, ex, ids, i)].numpy(),
                                       rtol=1e-4, atol=1e-6)
        assert any(r.max() > 0 for r in rows)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("target", ["logit", "contrast"])
def test_gradient_times_input_equals_per_prompt_backward(name, target, families):
    ex, model_dir = families[name]
    image = noise_image(44, 44, seed=9)
    res = ex.explain(image, WORD_PROMPTS, target=target, words="gradinput")
    ids, rows = ref_gradinput(reference(name, ex, model_dir), image, WORD_PROMPTS, target)
    for i, row in enumerate(rows):
        np.testing.assert_allclose(res.word_relevance[i].token_relevance, row[kept(name, ex, ids, i)].numpy(),
                                   rtol=1e-4, atol=1e-6)
    values = np.concatenate([p.token_relevance for p in res.word_relevance.prompts])
    assert res.word_relevance.signed and values.min() < 0 < values.max()


@pytest.mark.parametrize("name", FAMILIES)
def test_integrated_gradients_equal_the_path_taken_one_prompt_at_a_time(name, families):
    ex, model_dir = families[name]
    image = noise_image(40, 44, seed=10)
    ref = reference(name, ex, model_dir)
    for target in ("logit", "log_softmax"):
        res = ex.explain(image, WORD_PROMPTS, target=target, words="intgrad")
        ids, rows = ref_intgrad(ref, image, WORD_PROMPTS, target)
        for i, row in enumerate(rows):
            np.testing.assert_allclose(res.word_relevance[i].token_relevance, row[kept(name, ex, ids, i)].numpy(),
                                       rtol=1e-4, atol=1e-6)
    assert res.word_relevance.signed and res.word_relevance.method == "intgrad"


def test_integrated_gradients_add_up_to_the_score_change(families):
    """Completeness (Sundararajan et al.'s axiom): with a fine path, every token's relevance (the
    start and end tokens included) adds up to S(e) − S(0), the score's change when prompt k's token
    embeddings go from zero to what they are, read from the model's own forwards."""
    from clipcam.words.intgrad import path_points
    from clipcam.words.text_pass import path_gradients

    ex, model_dir = families["hf-clip"]
    image = noise_image(36, 36, seed=11)
    ref = reference("hf-clip", ex, model_dir)
    full, zero = ref.run(image, WORD_PROMPTS)[0].detach(), ref.run(image, WORD_PROMPTS, alpha=0.0)[0].detach()
    pixels = ex.adapter.preprocess(image)
    with torch.no_grad():
        embedded = ex.adapter.image_features(pixels)
    for target in ("logit", "contrast"):
        delta, grad = path_gradients(ex.adapter, embedded, tuple(WORD_PROMPTS), target, alphas=path_points(512))
        sums = (delta * grad).sum(dim=(1, 2)).numpy()
        change = [float(apply_target(full, target)[i] - apply_target(torch.cat([full[:i], zero[i:i + 1], full[i + 1:]]),
                                                                      target)[i]) for i in range(len(WORD_PROMPTS))]
        np.testing.assert_allclose(sums, change, rtol=2e-3, atol=1e-4)
        assert max(abs(c) for c in change) > 0.05  # the check is not about numbers near zero


def test_bpe_pieces_merge_into_words_and_words_sum_their_pieces(families):
    ex, _ = families["hf-clip"]
    res = ex.explain(noise_image(30, 30), WORD_PROMPTS, words="gradinput")
    zebra = res.word_relevance[1]  # "zebra" is not in the test vocabulary: spelled letter by letter
    assert zebra.tokens == ("a", "red", "z", "e", "b", "r", "a", "with", "a", "blue", "square", ".")
    assert zebra.words == ("a", "red", "zebra", "with", "a", "blue", "square", ".")
    assert zebra.word_of_token == (0, 1, 2, 2, 2, 2, 2, 3, 4, 5, 6, 7)
    assert zebra.word_relevance[2] == pytest.approx(zebra.token_relevance[2:7].sum(), rel=1e-5)
    assert res.tokens[2] == ("an", "astronaut")
    oc, _ = families["open_clip"]  # open_clip's real CLIP BPE
    words = oc.explain(noise_image(30, 30), ["clipcam heatmaps of zebrafish."], words="chefer").word_relevance[0]
    assert words.tokens == ("clip", "cam", "heat", "maps", "of", "zebra", "fish", ".")
    assert words.words == ("clipcam", "heatmaps", "of", "zebrafish", ".") and words.word_of_token[5:7] == (3, 3)


def test_sentencepiece_pieces_start_words():
    from clipcam.words import split_words

    texts, words, owner = split_words(("▁a", "▁zeb", "ra", "▁café", "."))
    assert texts == ("a", "zeb", "ra", "café", ".") and words == ("a", "zebra", "café.") and owner == (0, 1, 1, 2, 2)


def test_word_relevance_is_off_by_default_and_sweeps_carry_it(families):
    ex, _ = families["siglip"]
    image = noise_image(30, 30)
    res = ex.explain(image, WORD_PROMPTS)
    assert res.word_relevance is None and res.tokens is None
    sweep = ex.sweep(image, WORD_PROMPTS, words="gradeclip")
    assert sweep.word_relevance.method == "gradeclip" and sweep.at(1).word_relevance is sweep.word_relevance
    assert sweep.word_relevance.layer == 1  # the authors' last 8 layers of a 2-layer encoder: all of them


@pytest.mark.parametrize("kwargs,message", [
    ({"words": "attention"}, r"^Unknown word method 'attention'"),
    ({"words": "chefer", "words_layer": 3}, r"^Text layer 3 is out of range: this model has text layers 1 to 2\.$"),
    ({"words": "chefer", "words_layer": "last"}, r"^Text layer must be a whole number from 1 to 2; got 'last'\.$"),
])
def test_bad_word_settings_are_refused_with_a_sentence(kwargs, message, families):
    ex, _ = families["hf-clip"]
    with pytest.raises(ValueError, match=message):
        ex.explain(noise_image(20, 20), WORD_PROMPTS, **kwargs)


def test_word_colours_follow_the_legend():
    from clipcam.render import colorize, word_colors

    signed = word_colors(np.array([-1.0, 0.0, 1.0]), signed=True)
    assert tuple(signed[1]) == (255, 255, 255)
    assert signed[0][2] > signed[0][0] and signed[2][0] > signed[2][2]  # negative blue, positive red
    shades = np.array([0.0, 0.5, 1.0], dtype=np.float32)
    np.testing.assert_array_equal(word_colors(shades, signed=False, colormap="jet"), colorize(shades[None], "jet")[0])


def test_words_html_escapes_and_shades_every_word(families):
    from clipcam.render import words_html

    ex, _ = families["hf-clip"]
    res = ex.explain(noise_image(30, 30), ["a <b>red</b> cat", "a dog."], words="chefer")
    html = words_html(res.word_relevance, "jet")
    assert "<b>" not in html and "&lt;" in html
    assert html.count('class="clipcam-word"') == sum(len(p.words) for p in res.word_relevance.prompts)
    assert "as in the heatmaps" in html


def test_counterfactual_explains_the_negated_score(families):
    """Chefer on −S keeps the attention paths with a negative gradient, which the plain run drops;
    gradient × input only changes sign."""
    from clipcam.words.text_pass import word_relevance

    ex, model_dir = families["open_clip"]
    image = noise_image(40, 40, seed=11)
    pixels = ex.adapter.preprocess(image)
    plain = word_relevance(ex.adapter, pixels, WORD_PROMPTS, "logit", "gradinput")
    counter = word_relevance(ex.adapter, pixels, WORD_PROMPTS, "logit", "gradinput", counterfactual=True)
    for a, b in zip(plain.prompts, counter.prompts):
        np.testing.assert_allclose(b.token_relevance, -a.token_relevance, rtol=1e-5, atol=1e-7)
    assert counter.target == "-logit"
    counter = word_relevance(ex.adapter, pixels, WORD_PROMPTS, "logit", "chefer", layer=1, counterfactual=True)
    ids, rows = ref_chefer(reference("open_clip", ex, model_dir), image, WORD_PROMPTS, "negated", 1)
    for i, row in enumerate(rows):
        np.testing.assert_allclose(counter[i].token_relevance, row[kept("open_clip", ex, ids, i)].numpy(),
                                   rtol=1e-4, atol=1e-7)

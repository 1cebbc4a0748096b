"""TextSpan (clipcam.decompose.textspan) against the authors' code ported here, on synthetic heads
whose answer is known; mean-ablation; and ``python -m clipcam heads`` on shapes scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clipcam.decompose.textspan import HeadScores, mean_ablated, text_span, zero_shot_accuracy
from clihelpers import run_cli


# ----------------------------------------------------------------------------- the authors' code, ported
@torch.no_grad()
def authors_iterative_removal(data, text_features, texts, iters, rank):
    """``replace_with_iterative_removal`` of clip_text_span/compute_complete_text_set.py, as written
    there (on the CPU, float64 so that the comparison is not about rounding)."""
    results = []
    u, s, vh = np.linalg.svd(data, full_matrices=False)
    vh = vh[:rank]
    text_features = vh.T.dot(np.linalg.inv(vh.dot(vh.T)).dot(vh)).dot(text_features.T).T
    data = torch.from_numpy(data).double()
    mean_data = data.mean(dim=0, keepdim=True)
    data = data - mean_data
    reconstruct = mean_data.repeat(data.shape[0], 1).numpy()  # einops.repeat "A B -> (C A) B" there
    text_features = torch.from_numpy(text_features).double()
    for _ in range(iters):
        projection = data @ text_features.T
        top_n = np.argmax(projection.std(axis=0).numpy())
        results.append(texts[top_n])
        text_norm = text_features[top_n] @ text_features[top_n]  # ".T" on this 1-D tensor there
        reconstruct += ((data @ text_features[top_n] / text_norm)[:, np.newaxis]
                        * text_features[top_n][np.newaxis, :]).numpy()
        data = data - (data @ text_features[top_n] / text_norm)[:, np.newaxis] * text_features[top_n][np.newaxis, :]
        text_features = (text_features - (text_features @ text_features[top_n] / text_norm)[:, np.newaxis]
                         * text_features[top_n][np.newaxis, :])
    return reconstruct, results


def synthetic_heads(seed: int = 0, n: int = 200, dim: int = 24, bank: int = 12, heads: int = 3):
    """A bank of random unit texts and ``heads`` heads, head k varying along text 2k (plus a weaker
    second direction, text 2k + 1, and a little noise in every direction)."""
    rng = np.random.default_rng(seed)
    texts = [f"text {i}" for i in range(bank)]
    feats = rng.normal(size=(bank, dim))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    data = []
    for k in range(heads):
        main, second = rng.normal(size=(n, 1)) * 3.0, rng.normal(size=(n, 1)) * 1.0
        data.append(rng.normal(size=(1, dim)) + main * feats[2 * k] + second * feats[2 * k + 1]
                    + rng.normal(size=(n, dim)) * 0.05)
    return texts, feats, data


def test_text_span_finds_the_direction_each_head_was_built_to_carry() -> None:
    texts, feats, data = synthetic_heads()
    for k, head in enumerate(data):
        span = text_span(head, feats, texts, iters=2, rank=80)
        assert span.texts == (f"text {2 * k}", f"text {2 * k + 1}")
        assert span.explained[0] > 0.75 and span.explained[1] > 0.05  # 9 : 1 by construction, less the overlap


def test_text_span_equals_the_authors_code_and_its_variance_a_direct_projection() -> None:
    texts, feats, data = synthetic_heads(seed=3, n=60)
    for head in data:
        for rank in (80, 5):  # the authors' rank, and one below the data's, where the texts are projected
            span = text_span(head, feats, texts, iters=4, rank=rank)
            reconstruct, chosen = authors_iterative_removal(head.copy(), feats.copy(), texts, 4, rank)
            assert list(span.texts) == chosen
            np.testing.assert_allclose(span.reconstruct, reconstruct, rtol=1e-5, atol=1e-5)
            # Direct: the share of the centred data's variance in the span of the chosen (projected) texts.
            _, _, vh = np.linalg.svd(head, full_matrices=False)
            proj = vh[:rank].T @ vh[:rank]  # (E, E) onto the data's top right singular vectors
            centred = head - head.mean(0)
            for i in range(1, 5):
                basis, _ = np.linalg.qr((proj @ feats[list(span.indices[:i])].T))  # (E, i)
                direct = ((centred @ basis) ** 2).sum() / (centred ** 2).sum()
                assert sum(span.explained[:i]) == pytest.approx(direct, rel=1e-9)


def test_mean_ablation_with_nothing_ablated_is_the_full_models_accuracy() -> None:
    rng = np.random.default_rng(1)
    n, layers, nh, c = 40, 3, 2, 5
    scores = HeadScores(rng.normal(size=(n, c)), rng.normal(size=(n, layers, nh, c)), rng.normal(size=(n, layers, c)),
                        np.eye(c, dtype=bool)[rng.integers(0, c, n)])
    full = scores.embed + scores.heads.sum((1, 2)) + scores.mlps.sum(1)  # (N, C)
    expected = 100.0 * np.mean(full.argmax(1) == scores.labels.argmax(1))
    assert scores.accuracy() == pytest.approx(expected)
    # Everything ablated: every image gets the same scores, so the accuracy is that of one class.
    parts = scores.parts()
    everything = mean_ablated(parts, np.ones(parts.shape[1], bool))
    np.testing.assert_allclose(everything, np.broadcast_to(full.mean(0), full.shape), atol=1e-12)
    # One head ablated: exactly its term replaced by its mean.
    one = np.zeros((layers, nh), bool)
    one[1, 0] = True
    manual = full - scores.heads[:, 1, 0] + scores.heads[:, 1, 0].mean(0)
    assert scores.accuracy(heads=one) == pytest.approx(100.0 * np.mean(manual.argmax(1) == scores.labels.argmax(1)))
    assert zero_shot_accuracy(np.array([[0.0, 1.0], [2.0, 1.0]]), np.array([[True, True], [False, True]])) == 50.0


# ----------------------------------------------------------------------------- python -m clipcam heads
@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Twelve shapes scenes, a manifest naming each scene's objects (every other scene instead an
    object it does not hold, so that the model is right on about half), and a small text bank."""
    from PIL import Image

    from clipcam.eval.shapes import COLOURS, SHAPES, evaluation_set, object_prompt

    folder = tmp_path_factory.mktemp("scenes")
    lines = []
    for i, scene in enumerate(evaluation_set(12)):
        Image.fromarray(scene.image).save(folder / f"s{i}.png")
        names = [object_prompt(o) for o in scene.objects]
        absent = [f"a photo of a {c} {s}." for c in COLOURS for s in SHAPES if f"a photo of a {c} {s}." not in names]
        lines.append(json.dumps({"image": f"s{i}.png", "prompts": names if i % 2 == 0 else [absent[i % len(absent)]]}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    bank = [f"a photo of a {c}." for c in COLOURS] + [f"a photo of a {s}." for s in SHAPES]
    (folder / "texts.txt").write_text("# colours and shapes\n" + "\n".join(bank) + "\n\n")
    return folder


def test_heads_command_writes_the_table_and_its_full_accuracy_is_the_models(scenes, tmp_path) -> None:
    import pyarrow.parquet as pq

    from clipcam.explainer import load_explainer

    out = tmp_path / "out"
    done = run_cli("heads", "--model", "shapes", "--device", "cpu", "--images", scenes / "manifest.jsonl",
                   "--texts", scenes / "texts.txt", "--out", out, "--per-head", 3, "--last", 2)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out / "heads.parquet").to_pylist()
    assert [(r["layer"], r["head"]) for r in table] == [(layer, h) for layer in (3, 4) for h in (1, 2, 3, 4)]
    assert all(len(r["texts"]) == 3 and len(set(r["texts"])) == 3 for r in table)
    assert all(0.0 <= sum(r["explained"]) <= 1.0 + 1e-6 for r in table)
    report = json.loads((out / "heads.json").read_text())
    # The model's own zero-shot accuracy, from its logits: right when the best of all the scenes'
    # prompts names one of the scene's own objects.
    manifest = [json.loads(line) for line in (scenes / "manifest.jsonl").read_text().splitlines()]
    classes = list(dict.fromkeys(p for row in manifest for p in row["prompts"]))
    ex = load_explainer("shapes", device="cpu")
    right = [classes[int(np.argmax(ex.scores(str(scenes / row["image"]), classes)[0]))] in row["prompts"]
             for row in manifest]
    assert report["accuracy"]["full"] == pytest.approx(100.0 * np.mean(right))
    assert 20.0 < report["accuracy"]["full"] < 80.0  # the wrong labels count: not every image is right
    assert report["images"] == 12 and report["classes"] == len(classes)
    assert "| 3 | 1 |" in (out / "heads.md").read_text()


def test_heads_command_bad_input_gets_one_sentence(scenes, tmp_path) -> None:
    missing = run_cli("heads", "--model", "shapes", "--device", "cpu", "--images", scenes / "manifest.jsonl",
                      "--texts", tmp_path / "none.txt", "--out", tmp_path / "o")
    assert missing.returncode == 2
    assert missing.stderr == (f"clipcam heads: Cannot read the text bank '{tmp_path / 'none.txt'}'; give a UTF-8 text "
                              "file with one text a line.\n")
    (tmp_path / "one.txt").write_text("red\n")
    one = run_cli("heads", "--model", "shapes", "--device", "cpu", "--images", scenes / "manifest.jsonl",
                  "--texts", tmp_path / "one.txt", "--out", tmp_path / "o")
    assert one.stderr == f"clipcam heads: The text bank '{tmp_path / 'one.txt'}' holds 1 texts; give at least 2, one a line.\n"
    last = run_cli("heads", "--model", "shapes", "--device", "cpu", "--images", scenes / "manifest.jsonl",
                   "--texts", scenes / "texts.txt", "--out", tmp_path / "o", "--last", 0)
    assert last.stderr == "clipcam heads: --last must be at least 1; got 0.\n"


@pytest.mark.slow
def test_heads_command_on_ray_gives_the_same_table(scenes, tmp_path) -> None:
    ray = pytest.importorskip("ray")
    args = ["heads", "--model", "shapes", "--device", "cpu", "--images", scenes / "manifest.jsonl",
            "--texts", scenes / "texts.txt", "--per-head", 3, "--chunk", 4]
    here = run_cli(*args, "--out", tmp_path / "here")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        there = run_cli(*args, "--out", tmp_path / "ray", "--ray", "--workers", 2)
    finally:
        ray.shutdown()
    assert here.returncode == 0 and there.returncode == 0, there.stderr
    a, b = (json.loads((tmp_path / d / "heads.json").read_text()) for d in ("here", "ray"))
    assert [r["texts"] for r in a["rows"]] == [r["texts"] for r in b["rows"]]
    np.testing.assert_allclose([r["explained"] for r in a["rows"]], [r["explained"] for r in b["rows"]], atol=1e-4)
    assert a["accuracy"] == b["accuracy"]

"""Every bound on a request: the bad input gets its sentence, and the limit is where it is said to be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import noise_image as noise

from clipcam.constants import MAX_PROMPT_CHARS
from clipcam.explainer import clean_prompts


def test_library_caps_a_prompt_in_characters():
    assert clean_prompts(["x" * MAX_PROMPT_CHARS]) == ("x" * MAX_PROMPT_CHARS,)
    with pytest.raises(ValueError) as err:
        clean_prompts(["a cat", "y" * 1_000_000])
    assert str(err.value) == (f"Prompt 2 is 1000000 characters long; clipcam accepts at most {MAX_PROMPT_CHARS} "
                              "per prompt (CLIP reads only 77 tokens). Shorten it.")


def test_one_prompt_checker_says_what_the_explainer_says():
    """clipcam.prompts.clean_prompts (the one checker the explainer will import) refuses with the
    explainer's own sentences, byte for byte."""
    from clipcam import prompts

    for bad in (["a cat", "y" * (MAX_PROMPT_CHARS + 1)], ["", "  "], ["p"] * 65):
        with pytest.raises(ValueError) as ours:
            prompts.clean_prompts(bad)
        with pytest.raises(ValueError) as theirs:
            clean_prompts(bad)
        assert str(ours.value) == str(theirs.value)
    assert prompts.clean_prompts([" a cat ", "", "a dog"]) == clean_prompts([" a cat ", "", "a dog"]) == ("a cat", "a dog")


# ----------------------------------------------------------------- prompts in the app
def test_app_refuses_a_huge_prompt_text_by_its_length_first():
    """1 MB of prompt text is refused from its length alone, before it is split (the benchmark
    benchmarks/latency.py --bounds times it and measures its memory)."""
    from clipcam.prompts import MAX_APP_PROMPTS, parse_prompts

    most = MAX_APP_PROMPTS * (MAX_PROMPT_CHARS + 2)
    with pytest.raises(ValueError) as err:
        parse_prompts("a" * 1_000_000)
    assert str(err.value) == (f"The prompts are 1000000 characters long; the app accepts at most {most} in all "
                              f"({MAX_APP_PROMPTS} prompts of up to {MAX_PROMPT_CHARS} characters, one per line).")
    with pytest.raises(ValueError) as err:
        parse_prompts("a cat\n" + "b" * (MAX_PROMPT_CHARS + 1))
    assert str(err.value) == (f"Prompt 2 is {MAX_PROMPT_CHARS + 1} characters long; the app accepts at most "
                              f"{MAX_PROMPT_CHARS} per prompt (CLIP reads only 77 tokens). Shorten it.")
    full = "\n".join(f"{i:03d}" + "c" * (MAX_PROMPT_CHARS - 3) for i in range(MAX_APP_PROMPTS))
    assert len(parse_prompts(full)[0]) == MAX_APP_PROMPTS  # the most the app accepts still passes


def test_long_prompts_are_shortened_in_labels(explainer):
    """The tiles' captions shorten a long prompt, and prompts that shorten alike stay told apart."""
    from clipcam.app.kept import keep
    from clipcam.app.pictures import gallery_items

    long = ["a photo of " + "a very " * 20 + f"long {word}." for word in ("cat", "dog")]
    res = explainer.explain(noise(40, 40), long, layer=1)
    labels = [label for _, label in gallery_items(keep(res, "tiny", []), "inferno", 0.5)]
    assert all(len(label) <= 64 for label in labels) and labels[0].startswith("1 · ")
    assert "a photo of a very" in labels[0] and labels[0] != labels[1]


# ----------------------------------------------------------------- time limit and cancellation
def test_deadline_stops_at_the_time_limit_and_when_the_client_goes():
    from clipcam.app.server import Deadline, Stopped

    now = [0.0]
    deadline = Deadline(5, clock=lambda: now[0])
    seen = []
    report = deadline.progress(lambda done, total: seen.append(done))
    report(1, 10)
    now[0] = 5.5
    with pytest.raises(Stopped) as err:
        report(2, 10)
    assert str(err.value) == ("This request ran past the server's time limit of 5 s (CLIPCAM_TIME_LIMIT), so it was "
                              "stopped. Pick a narrower sublayer, fewer layers or a gradient method.")
    assert seen == [1]
    here = [True]
    gone = Deadline(60, alive=lambda: here[0])
    gone.check()
    here[0] = False
    with pytest.raises(Stopped, match="^The page that asked for this result was closed, so the work was stopped.$"):
        gone.check()


def test_score_cam_stops_at_its_next_progress_point(explainer):
    """The explainer's progress callback may raise: Score-CAM stops there and leaves no hook behind."""
    from clipcam.app.server import Deadline, Stopped

    calls = []
    deadline = Deadline(60, alive=lambda: len(calls) < 2)
    with pytest.raises(Stopped):
        explainer.explain(noise(40, 40), ["a cat", "a dog"], layer=1, sublayer="mlp.fc1", method="scorecam",
                          progress=deadline.progress(lambda done, total: calls.append(done)))
    assert len(calls) == 2 and calls[-1] < 128  # 128 channels: it stopped before the end
    assert not any(m._forward_hooks for m in explainer.model.modules())


def test_compare_budget_counts_both_models():
    from clipcam.app.inputs import check_forwards

    check_forwards(2 * 2500, 5000, 1, "mlp.fc1", models=2)
    with pytest.raises(ValueError) as err:
        check_forwards(3072 + 4096, 5000, 1, "mlp.fc1", models=2)
    assert str(err.value) == (
        "Score-CAM would run 7168 forward passes here (2 models together), above this server's limit of 5000 "
        "(CLIPCAM_MAX_FORWARDS). Pick a narrower sublayer (mlp.fc1 is 4× wider), one layer instead of a sweep, "
        "or a gradient method.")


# ----------------------------------------------------------------- what the server keeps, and its files
def test_sessions_are_bounded_and_their_folders_deleted(explainer, tmp_path):
    from clipcam.app.kept import keep
    from clipcam.app.sessions import Sessions

    res = explainer.explain(noise(60, 40), ["a cat", "a dog"], layer=1)
    kept = keep(res, {"model": "tiny"}, [])
    store = Sessions(2, root=tmp_path / "root")
    for name in ("one", "two"):
        store.put(name, "explain", kept)
        store.downloads(name, "explain", "inferno", 0.5, False)
    first = store.folder("one")
    assert (first / "explain" / "heatmaps.npz").exists()
    store.put("three", "explain", kept)  # the least recently used session goes, with its files
    assert len(store) == 2 and store.get("one", "explain") is None and not first.exists()
    again = store.downloads("two", "explain", "jet", 0.5, False)  # a new download replaces the last
    assert sorted(p.name for p in store.folder("two").rglob("*") if p.is_file()) == \
        ["grid.png", "heatmaps.npz", "scores.json"] and all(map(lambda p: Path(p).exists(), again))
    store.drop("two")
    assert not store.folder("two").exists()
    with pytest.raises(ValueError, match="^Nothing to download yet: run an explanation first"):
        store.downloads("two", "explain", "jet", 0.5, False)
    store.close()
    assert not (tmp_path / "root").exists()


def test_a_kept_result_holds_the_display_image_not_the_photo(explainer):
    from clipcam.app.kept import DISPLAY_SIDE, keep

    res = explainer.explain(noise(3000, 2000), ["a cat"], layer=1)
    kept = keep(res, {}, [])
    assert kept.display.size == (DISPLAY_SIDE, 683) and kept.image_size == (3000, 2000)


def test_sweep_download_is_bounded(explainer):
    """A sweep's image_maps are float16 and scaled to fit DOWNLOAD_MAP_BYTES; the grid maps stay raw."""
    from clipcam.app.kept import keep
    from clipcam.app.pictures import DOWNLOAD_MAP_BYTES, download_size, write_downloads

    prompts = [f"prompt {i}" for i in range(16)]
    sweep = explainer.sweep(noise(2000, 2000), prompts)
    kept = keep(sweep, {}, [])
    # the same bound for large's 24 layers × 16 prompts, from the shapes alone
    big = keep(sweep, {}, [])
    object.__setattr__(big, "layer_maps", np.zeros((24, 16, 16, 16), np.float32))
    width, height = download_size(big)
    assert 24 * 16 * width * height * 2 <= DOWNLOAD_MAP_BYTES and width == height
    import tempfile

    folder = Path(tempfile.mkdtemp())
    npz = np.load(write_downloads(kept, "inferno", 0.5, False, folder)[2])
    w, h = download_size(kept)
    assert npz["image_maps"].dtype == np.float16 and npz["image_maps"].shape == (2, 16, h, w)
    assert npz["image_maps"].nbytes <= DOWNLOAD_MAP_BYTES
    np.testing.assert_array_equal(npz["grid_maps"], sweep.layer_maps)


# ----------------------------------------------------------------- GPU on Spaces
def test_gpu_work_is_wrapped_in_spaces_gpu_when_spaces_imports(monkeypatch):
    import sys
    import types

    from clipcam.app import server as service

    assert service.spaces_gpu() is None  # not installed here: everything runs unchanged
    wrapped = []

    def on_zero_gpu(duration):
        def wrap(fn):
            wrapped.append((duration, fn))
            return lambda *args, **kwargs: ("on the GPU", fn)
        return wrap

    fake = types.ModuleType("spaces")
    fake.GPU = on_zero_gpu
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert service.spaces_gpu()() == ("on the GPU", service.gpu_task)
    assert wrapped == [(service.gpu_duration, service.gpu_task)]
    fake.GPU = lambda duration: (lambda fn: fn)  # what spaces.GPU does off ZeroGPU hardware
    assert service.spaces_gpu() is None
    assert service.gpu_duration(service.gpu_seconds(3072), "base") == 30 + int(0.02 * 3072)


def test_image_file_size_is_checked_from_its_header(tmp_path):
    from PIL import Image

    from clipcam.images import check_file_size

    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000)).save(big)
    check_file_size(big, 6_000_000)
    with pytest.raises(ValueError) as err:
        check_file_size(big, 1_000_000)
    assert str(err.value) == ("The image is 3000×2000 = 6 megapixels; the limit is 1 megapixels. "
                              "Please downscale it first.")
    (tmp_path / "notes.png").write_text("not an image")
    check_file_size(tmp_path / "notes.png", 1)  # left to load_image, which names the problem


def test_janitor_removes_old_cached_files_and_the_empty_folders_gradio_leaves(tmp_path):
    import os

    from clipcam.app.server import Janitor

    now = [1000.0]
    old, fresh, full, kept = tmp_path / "aa" / "bb", tmp_path / "cc", tmp_path / "dd", tmp_path / "ee"
    for folder in (old, fresh, full, kept):
        folder.mkdir(parents=True)
    stale, new, example = full / "image.jpeg", fresh / "grid.png", kept / "example.png"
    for path in (stale, new, example):
        path.write_bytes(b"x")
    for path in (old, tmp_path / "aa", stale, example):
        os.utime(path, (100, 100))
    janitor = Janitor(tmp_path, age=60, clock=lambda: now[0])
    tracked = {str(stale), str(new)}
    janitor.keep, janitor.tracked = lambda: {str(example)}, lambda: [tracked]
    assert janitor.tidy() == 0  # not yet time (every age / 2)
    now[0] += 31
    for path in (fresh, new):
        os.utime(path, (now[0], now[0]))
    os.utime(full, (100, 100))
    # the stale file, then "aa/bb" (old and empty) and "dd" (emptied now, unchanged since 100);
    # "aa" just changed, "cc" and its file are fresh, the example is kept
    assert janitor.tidy() == 3
    assert not stale.exists() and not old.exists() and not full.exists()
    assert new.exists() and example.exists() and tracked == {str(new)}


def test_janitor_keeps_what_the_served_app_keeps(tmp_path):
    """Watching the built demo: what any of its components keeps in the cache survives; the sets the
    janitor forgets deleted paths in are the demo's own (uploads, and each component's outputs)."""
    from clipcam.app.layout import build_demo

    demo = build_demo(models=["shapes"])
    janitor = demo.clipcam_app.janitor
    component = next(b for b in demo.blocks.values() if hasattr(b, "keep_in_cache"))
    component.keep_in_cache.add(str(tmp_path / "default.png"))
    assert str(tmp_path / "default.png") in janitor.keep()
    tracked = janitor.tracked()
    assert any(paths is demo.upload_file_set for paths in tracked)
    assert any(paths is component.temp_files for paths in tracked)


def test_library_echoes_a_bad_choice_shortened():
    from clipcam.constants import check_choice

    with pytest.raises(ValueError) as err:
        check_choice("q" * 5_000_000, ["logit", "contrast"], "target")
    assert str(err.value) == "Unknown target '" + "q" * 78 + "…: choose one of logit, contrast."


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident memory from /proc")
def test_released_memory_goes_back_to_the_os():
    """What a worker thread freed stays resident (glibc keeps its arena's pages while a later block
    pins the heap's top) until release_memory trims it."""
    import threading

    from clipcam.app.server import release_memory

    kept = []

    def request():  # 400 MB in 100 kB blocks (below glibc's mmap threshold), freed but for the last;
        # more than the 150 MB asserted below, as the arena may already hold free pages the blocks reuse
        blocks = [bytearray(100_000) for _ in range(4000)]
        kept.append(bytearray(100_000))
        del blocks

    before = _rss_mb()
    worker = threading.Thread(target=request)
    worker.start()
    worker.join()
    freed = _rss_mb()
    assert release_memory() is True
    trimmed = _rss_mb()
    assert freed - before > 150, (before, freed)
    assert trimmed - before < 20, (before, freed, trimmed)


def test_every_run_handler_releases_memory_however_it_ends(tiny_dir, monkeypatch):
    from clipcam.app import service
    from clipcam.app.layout import build_demo

    calls = []
    monkeypatch.setattr(service, "release_memory", lambda: calls.append(1) or True)
    app = build_demo(models=[str(tiny_dir)], device="cpu").clipcam_app
    view = ("inferno", 0.5, False)
    app.explain(noise(64, 48), "a cat\na dog", str(tiny_dir), 1, "mlp.fc1", "logit", "gradcam", *view, None,
                progress=None)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="^No prompts given"):
        app.sweep(noise(64, 48), "", str(tiny_dir), "mlp.fc1", "logit", "gradcam", *view, None, progress=None)
    assert len(calls) == 2

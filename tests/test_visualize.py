"""mrcnn.visualize: every function writes a real PNG of the expected size, headless."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mrcnn import visualize

FIGSIZE, DPI = (4, 3), 50  # -> PNG of 200 x 150 pixels
NAMES = ["BG", "shirt, blouse", "pants", "dress"]


@pytest.fixture
def scene():
    """A 60 x 80 image with two rectangular instances (shirt, dress)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)  # [H, W, 3]
    masks = np.zeros((60, 80, 2), bool)  # [H, W, N]
    masks[5:30, 10:40, 0] = True
    masks[25:55, 35:75, 1] = True
    boxes = np.array([[5, 10, 30, 40], [25, 35, 55, 75]])  # [N, (y1, x1, y2, x2)]
    return image, boxes, masks, np.array([1, 3]), np.array([0.9, 0.75])


def _check_png(path, width=200, height=150):
    assert os.path.getsize(path) > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (width, height)
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 0, "the PNG is a blank image"
    leftovers = [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]
    assert not leftovers
    return pixels


def _backend_after_import(prelude="", **env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    env.update(env_extra)
    code = prelude + "import mrcnn.visualize, matplotlib; print(matplotlib.get_backend())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    return out.stdout.strip().lower() or out.stderr


def test_backend_is_headless_without_display():
    assert _backend_after_import() == "agg"
    assert _backend_after_import(MPLBACKEND="TkAgg") == "agg"  # would fail headless


def test_backend_choice_respected_in_jupyter_and_when_explicit():
    assert _backend_after_import("import matplotlib; matplotlib.use('svg'); ") == "svg"
    inline = "module://matplotlib_inline.backend_inline"
    got = _backend_after_import(f"import ipykernel, matplotlib; matplotlib.use('{inline}'); ")
    assert got == inline


def test_display_instances_png_and_attribute_captions(tmp_path, scene):
    image, boxes, masks, class_ids, scores = scene
    attrs = np.zeros((2, 3), np.uint8)  # multi-hot [N, NUM_ATTRIBUTES]
    attrs[0, [0, 2]] = 1
    fig = visualize.display_instances(
        image, boxes, masks, class_ids, NAMES, scores, title="t", figsize=FIGSIZE,
        attribute_names=["collar", "sleeve", "pocket"], attributes=attrs,
        save_path=tmp_path / "inst.png", dpi=DPI)
    _check_png(tmp_path / "inst.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "shirt, blouse 0.900\ncollar, pocket" in texts
    assert "dress 0.750" in texts


def test_display_instances_rejects_mismatched_masks(scene):
    image, boxes, masks, class_ids, scores = scene
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        visualize.display_instances(image, boxes, masks[..., :1], class_ids, NAMES)


def test_display_differences(tmp_path, scene):
    image, boxes, masks, class_ids, scores = scene
    pred_masks = masks.copy()
    pred_masks[5:10, :, 0] = False
    fig = visualize.display_differences(
        image, boxes, class_ids, masks, boxes, class_ids, scores, pred_masks, NAMES,
        figsize=FIGSIZE, dpi=DPI, save_path=tmp_path / "diff.png")
    _check_png(tmp_path / "diff.png")
    captions = [t.get_text() for t in fig.axes[0].texts if t.get_text()]
    assert "0.90 / 0.80" in captions and "0.75 / 1.00" in captions


def test_draw_instances_on_image_is_pure_numpy(tmp_path, scene):
    image, boxes, masks, class_ids, scores = scene
    out = visualize.draw_instances_on_image(image, boxes, masks, class_ids, NAMES,
                                            scores, save_path=tmp_path / "o.png")
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert not np.array_equal(out, image)
    assert np.array_equal(out[0, 0], image[0, 0])  # outside every instance
    color = np.array(visualize.class_colors(NAMES)[3]) * 255
    assert np.allclose(out[55, 60], color, atol=1)  # bottom box edge of the dress
    assert np.array_equal(_check_png(tmp_path / "o.png", 80, 60), out)


def test_draw_box_in_place():
    image = np.zeros((20, 20, 3), np.uint8)
    result = visualize.draw_box(image, (2, 3, 10, 15), (255, 0, 0))
    assert result is image
    assert image[2, 8, 0] == 255 and image[10, 8, 0] == 255 and image[6, 3, 0] == 255
    assert image[6, 8].sum() == 0  # inside untouched


def test_apply_mask_blends_only_masked_pixels():
    image = np.full((4, 4, 3), 100.0)
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    visualize.apply_mask(image, mask, (1.0, 0.0, 0.0), alpha=0.5)
    assert np.allclose(image[0, 0], [177.5, 50, 50]) and np.allclose(image[1, 1], 100)


def test_display_images_and_top_masks(tmp_path, scene):
    image, _, masks, class_ids, _ = scene
    visualize.display_images([image, image[..., 0]], titles=["a", "b"], cols=2,
                             figsize=FIGSIZE, dpi=DPI, save_path=tmp_path / "grid.png")
    _check_png(tmp_path / "grid.png")
    fig = visualize.display_top_masks(image, masks, class_ids, NAMES, limit=2,
                                      figsize=FIGSIZE, dpi=DPI, save_path=tmp_path / "t.png")
    _check_png(tmp_path / "t.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["H x W=60x80", "dress", "shirt, blouse"]  # larger area first


def test_plot_precision_recall_and_overlaps(tmp_path):
    visualize.plot_precision_recall(0.7, np.array([1, 1, 0.5]), np.array([0, 0.5, 1]),
                                    figsize=FIGSIZE, dpi=DPI, save_path=tmp_path / "pr.png")
    _check_png(tmp_path / "pr.png")
    overlaps = np.array([[0.9, 0.1], [0.0, 0.6]])  # [N_pred, N_gt]
    fig = visualize.plot_overlaps(np.array([1, 3]), np.array([1, 2]), np.array([0.9, 0.8]),
                                  overlaps, NAMES, figsize=FIGSIZE, dpi=DPI,
                                  save_path=tmp_path / "ov.png")
    _check_png(tmp_path / "ov.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "0.900\nmatch" in texts and "0.600\nwrong" in texts


def test_draw_boxes_and_rois(tmp_path, scene):
    image, boxes, masks, _, _ = scene
    visualize.draw_boxes(image, boxes=boxes, refined_boxes=boxes + 2, masks=masks,
                         captions=["a", "b"], visibilities=[1, 2], figsize=FIGSIZE,
                         dpi=DPI, save_path=tmp_path / "boxes.png")
    _check_png(tmp_path / "boxes.png")
    mini = np.ones((2, 14, 14), np.float32)  # [N, h, w] mini-masks
    fig = visualize.draw_rois(image, boxes, boxes + 1, mini, np.array([1, 0]), NAMES,
                              figsize=FIGSIZE, dpi=DPI, save_path=tmp_path / "rois.png")
    _check_png(tmp_path / "rois.png")
    assert "positive: 1" in fig.axes[0].get_title()


def test_display_weight_stats_on_keras_model(tmp_path, capsys):
    import keras
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="d1"),
                              keras.layers.Dense(2, kernel_initializer="zeros", name="d2")])
    table = visualize.display_weight_stats(model, save_path=tmp_path / "w.png")
    assert table[0][:5] == ["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]
    rows = {r[0].split("/", 1)[-1]: r for r in table[1:]}  # drop "sequential/"
    assert len(rows) == 4 and rows["d1/kernel"][1] == "(6, 4)"
    assert "constant" in rows["d2/kernel"][5] and rows["d1/kernel"][5] == ""
    assert "d1/kernel" in capsys.readouterr().out
    with Image.open(tmp_path / "w.png") as im:
        assert im.size[0] > 0 and np.asarray(im.convert("L")).std() > 0


def test_class_colors_stable_across_processes():
    here = [list(c) for c in visualize.class_colors(NAMES)]
    code = ("import json; from mrcnn.visualize import class_colors; "
            f"print(json.dumps([list(c) for c in class_colors({NAMES!r})]))")
    outs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=120)
        outs.append(json.loads(out.stdout))
    assert outs[0] == here and outs[1] == here
    assert len({tuple(c) for c in here}) == len(NAMES)  # distinct names, distinct colours
    assert all(0 <= v <= 1 for c in here for v in c)


def test_random_colors():
    colors = visualize.random_colors(5)
    assert len(colors) == 5 and len(set(colors)) == 5


def test_overlay_of_small_image_is_upscaled_with_legible_labels(tmp_path):
    from fashion.inference.outputs import draw_overlay
    image = np.full((128, 96, 3), 90, np.uint8)
    masks = np.zeros((128, 96, 1), bool)
    masks[40:100, 20:80, 0] = True
    result = {"rois": np.array([[40, 20, 100, 80]]), "masks": masks,
              "class_ids": np.array([3]), "scores": np.array([0.87]),
              "attribute_probabilities": np.array([[0.9, 0.1, 0.6]])}
    meta = {"class_names": NAMES, "attribute_names": ["sleeveless", "maxi", "floral"]}
    out = draw_overlay(image, result, meta, str(tmp_path / "o.png"))
    assert out.shape == (512, 384, 3)
    _check_png(tmp_path / "o.png", 384, 512)
    label = out[160:200, 80:384]                 # the label's row at the box's top-left
    white = np.all(label == 255, axis=-1).sum()
    assert white > 50, "no label text drawn"
    plain = visualize.draw_instances_on_image(image, result["rois"], masks, [3], NAMES,
                                              show_labels=False, min_side=512)
    assert (np.abs(out.astype(int) - plain).sum(-1) > 0).sum() > 200


def test_label_positions_do_not_overlap():
    # Three garments on almost the same box (a person's top, jacket and dress) and one
    # at the image's bottom edge: every label stays inside the image, none overlap.
    boxes = [(10, 10, 60, 50), (11, 12, 61, 52), (10, 10, 58, 49), (90, 70, 100, 99)]
    sizes = [(30, 9), (40, 9), (25, 9), (28, 9)]
    spots = visualize.label_positions(boxes, sizes, (100, 100))
    assert spots[0] == (11, 11)  # the first label sits at its box's inside corner
    rects = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(spots, sizes)]
    for x1, y1, x2, y2 in rects:
        assert 0 <= x1 and x2 < 100 and 0 <= y1 and y2 < 100
    for i in range(len(rects)):
        for j in range(i):
            a, b = rects[i], rects[j]
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1], (a, b)

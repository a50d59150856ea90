"""Exports (SavedModel, ONNX, TFLite) against detect() on the same weights, strictly.

One calibrated tiny model (tests/export_model.py: ResNet18, 128 px, 3 classes,
5 attributes) and its exports are shared by the module. Every format must give, on 12
images of varied sizes (smaller and larger than the input, both aspect ratios), the same
detection count and class ids, boxes within 0.5 px, scores and attribute probabilities
within 1e-4 and mask IoU >= 0.99 per instance (tests/parity.py).
"""
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.export import ExportError, preprocess
from mrcnn.export import results as postprocess
from tests.export_model import shared_model, shared_saved_model, smooth_images
from tests.parity import compare

SIZES = [(90, 60), (128, 128), (300, 200), (50, 170), (640, 480), (37, 41), (128, 64),
         (200, 201), (99, 100), (1000, 30), (64, 64), (129, 255)]
FIGURES = {}


def png_bytes(image):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return shared_model(tmp_path_factory)


@pytest.fixture(scope="module")
def images():
    return smooth_images(1, SIZES)


@pytest.fixture(scope="module")
def reference(model, images):
    """detect() on each image (batch size 1, as the inference config has)."""
    results = model.detect(images)
    assert sum(len(r["class_ids"]) for r in results) > 3 * len(images)
    return results


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory):
    return shared_saved_model(tmp_path_factory)[1]


@pytest.fixture(scope="module")
def loaded(saved_model_dir):
    return tf.saved_model.load(saved_model_dir)


def record(name, figures):
    FIGURES[name] = figures
    print(f"\nparity {name}: " + ", ".join(f"{k}={v:.3g}" for k, v in figures.items()))


# ---------------------------------------------------------------------- preprocessing
def test_in_graph_molding_is_bit_identical_to_numpy(model):
    config = model.config
    fn = tf.function(lambda im: preprocess.mold_one(im, config), reduce_retracing=True)
    rng = np.random.default_rng(5)
    sizes = SIZES + [tuple(rng.integers(3, 400, 2)) for _ in range(8)]
    for h, w in sizes:
        image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        ref_image, ref_meta = preprocess.numpy_reference(image, config)
        padded, meta = fn(tf.constant(image))
        np.testing.assert_array_equal(padded.numpy(), ref_image, err_msg=f"{h}x{w}")
        np.testing.assert_array_equal(meta.numpy(), ref_meta, err_msg=f"{h}x{w}")


# ---------------------------------------------------------------------- SavedModel
def test_saved_model_layout_and_labels(saved_model_dir, model):
    assert saved_model_dir.endswith(os.sep + "1")                    # TF Serving version
    assert os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb"))
    with open(os.path.join(saved_model_dir, "assets", "labels.json")) as f:
        labels = json.load(f)
    assert labels["class_names"] == ["BG", "shirt", "skirt", "shoe"]
    assert labels["attribute_names"][1] == "striped"
    assert labels["input_size"] == 128 and labels["extra"]["category_ids"] == [-1, 11, 12, 13]
    assert labels["config"]["NUM_ATTRIBUTES"] == 5
    assert "detection_attributes" in labels["outputs"]


def test_saved_model_image_tensor_matches_detect(loaded, images, reference):
    figures = {}
    fn = loaded.signatures["image_tensor"]
    for i, (image, ref) in enumerate(zip(images, reference)):
        out = fn(images=tf.constant(image[None]))
        got = postprocess.to_results(out, [image.shape])[0]
        compare(ref, got, figures, f"image_tensor {image.shape}")
        assert out["detection_masks"].shape[2:] == (28, 28)
    record("saved_model image_tensor", figures)


def test_saved_model_serving_default_batch_of_encoded_images(loaded, images, reference):
    """One call with all 12 PNGs of different sizes (decoded and resized in the graph)."""
    out = loaded.signatures["serving_default"](
        images=tf.constant([png_bytes(im) for im in images]))
    assert out["detection_boxes"].shape[0] == len(images)
    figures = {}
    results = postprocess.to_results(out, [im.shape for im in images])
    for image, ref, got in zip(images, reference, results):
        compare(ref, got, figures, f"serving_default {image.shape}")
    record("saved_model serving_default", figures)


def test_jpeg_bytes_decode_like_pil(loaded, images, model):
    """serving_default decodes JPEG as PIL does (libjpeg-turbo, same IDCT)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(images[2]).save(buf, format="JPEG", quality=90)
    decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    ref = model.detect([decoded])[0]
    out = loaded.signatures["serving_default"](images=tf.constant([buf.getvalue()]))
    compare(ref, postprocess.to_results(out, [decoded.shape])[0], where="jpeg")


def test_paste_masks_and_rle(loaded, images, reference):
    from pycocotools import mask as mask_utils
    image, ref = images[4], reference[4]
    out = loaded.signatures["image_tensor"](images=tf.constant(image[None]))
    n = int(out["num_detections"][0])
    masks, scores = postprocess.paste_masks(out["detection_boxes"][0, :n].numpy(),
                                            out["detection_masks"][0, :n].numpy(),
                                            image.shape)
    np.testing.assert_array_equal(masks, ref["masks"])
    np.testing.assert_allclose(scores, ref["mask_scores"], atol=1e-4)
    rle = postprocess.to_rle(masks[..., 0])
    assert rle["size"] == list(image.shape[:2])
    np.testing.assert_array_equal(mask_utils.decode(dict(rle, counts=rle["counts"].encode())),
                                  masks[..., 0])


_ISOLATED = textwrap.dedent("""
    import importlib.abc, json, sys
    root = sys.argv[1]
    sys.path[:] = [p for p in sys.path if p and not p.startswith(root)]
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("mrcnn", "fashion", "tests"):
                raise ImportError(name + " is blocked")
    sys.meta_path.insert(0, Block())
    import numpy as np, tensorflow as tf
    try:
        import mrcnn
        raise SystemExit("mrcnn is importable")
    except ImportError:
        pass
    model = tf.saved_model.load(sys.argv[2])
    data = np.load(sys.argv[3])
    out = {}
    for i in range(int(data["count"])):
        image, png = data[f"image{i}"], data[f"png{i}"].tobytes()
        a = model.signatures["image_tensor"](images=tf.constant(image[None]))
        b = model.signatures["serving_default"](images=tf.constant([png]))
        out.update({f"a{i}_{k}": v.numpy() for k, v in a.items()})
        out.update({f"b{i}_{k}": v.numpy() for k, v in b.items()})
    np.savez(sys.argv[4], **out)
    print(json.dumps(sorted(model.signatures.keys())))
""")


def test_saved_model_loads_where_project_is_not_importable(saved_model_dir, images,
                                                           reference, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    images, reference = images[:4], reference[:4]         # 2 upscaled, 2 downscaled
    arrays = {"count": len(images)}
    for i, image in enumerate(images):
        arrays[f"image{i}"] = image
        arrays[f"png{i}"] = np.frombuffer(png_bytes(image), np.uint8)
    np.savez(tmp_path / "in.npz", **arrays)
    script = tmp_path / "load.py"
    script.write_text(_ISOLATED)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([sys.executable, "-P", str(script), root,
                           os.path.abspath(saved_model_dir), str(tmp_path / "in.npz"),
                           str(tmp_path / "out.npz")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["image_tensor",
                                                                "serving_default"]
    out = np.load(tmp_path / "out.npz")
    figures = {}
    for i, image in enumerate(images):
        for sig in ("a", "b"):
            prefix = f"{sig}{i}_"
            outputs = {k[len(prefix):]: out[k] for k in out.files if k.startswith(prefix)}
            compare(reference[i], postprocess.to_results(outputs, [image.shape])[0],
                    figures, where=f"fresh process {sig} {image.shape}")
    record("saved_model in a fresh process without the project", figures)


def test_export_errors_are_one_sentence(model, tmp_path):
    with pytest.raises(ExportError, match="unknown"):
        model.export(str(tmp_path / "x"), "caffe")
    with pytest.raises(ExportError, match="class names"):
        model.export(str(tmp_path / "x"), "saved_model", class_names=["BG", "a"])
    assert not os.path.exists(tmp_path / "x")


# ---------------------------------------------------------------------- ONNX, TFLite
@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    """The ONNX export; its self-check holds onnxruntime to the parity tolerances against
    the SavedModel's function (which equals detect()) on two probe images.

    Measured on this model (12 images): scores within 1.3e-5, attributes within 1.1e-5,
    boxes exact, mask IoU 1.0: onnxruntime's convolutions (MLAS) round differently from
    TensorFlow's (oneDNN) by ~1e-6 relative, and the molded input is bit-identical."""
    return model.export(str(tmp_path_factory.mktemp("onnx") / "onnx"), "onnx",
                        class_names=["BG", "shirt", "skirt", "shoe"])


def test_onnx_preprocessing_is_bit_identical_to_numpy(model):
    """onnxruntime resizes and molds exactly as detect() does (tf.multiply taps are
    evaluated in the written order), including downscaled images whose taps Grappler
    would reorder in TensorFlow."""
    import onnxruntime as ort
    import tf2onnx
    from mrcnn.export.onnx import SINGLE_IMAGE_SPEC
    from mrcnn.export.verify import probe_images
    config = model.config
    fn = tf.function(lambda im: preprocess.mold_one(im[0], config, tf.multiply)[0],
                     input_signature=[SINGLE_IMAGE_SPEC], autograph=False)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=[SINGLE_IMAGE_SPEC],
                                             opset=17)
    sess = ort.InferenceSession(proto.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    for image in probe_images(config) + smooth_images(1, SIZES):
        ref_image, _ = preprocess.numpy_reference(image, config)
        got = sess.run(None, {sess.get_inputs()[0].name: image[None]})[0]
        np.testing.assert_array_equal(got, ref_image, err_msg=f"{image.shape}")


def test_onnx_matches_detect(onnx_path, images, reference):
    from mrcnn.export import onnx as onnx_export
    assert os.path.isfile(os.path.join(os.path.dirname(onnx_path), "labels.json"))
    _, run = onnx_export.load(onnx_path)
    figures = {}
    for image, ref in zip(images, reference):
        got = postprocess.to_results(run(image), [image.shape])[0]
        compare(ref, got, figures, f"onnx {image.shape}")
    record("onnx (onnxruntime)", figures)


def test_onnx_graph_has_no_loops_or_slow_ops(onnx_path):
    """What made onnxruntime slow: tf2onnx turns CropAndResize into a loop over boxes
    (a slice and transpose of the whole feature map per box), map_fn and cumprod into
    loops, and onnxruntime's ConvTranspose is several times slower than its MatMul.
    The export traces those parts with gathers, CumSum and a matrix product instead."""
    import onnx
    ops = {node.op_type for node in onnx.load(onnx_path).graph.node}
    assert not ops & {"Loop", "Scan", "If", "ConvTranspose", "ScatterElements",
                      "ScatterND"}, ops & {"Loop", "Scan", "If", "ConvTranspose"}
    assert {"Conv", "NonMaxSuppression", "Gather", "MatMul"} <= ops


def test_onnx_refuses_bfloat16_models(tmp_path):
    from tests.export_model import ExportConfig
    from mrcnn.model import MaskRCNN

    class Bf16(ExportConfig):
        MIXED_PRECISION = "mixed_bfloat16"
    bf16 = MaskRCNN("inference", Bf16(), str(tmp_path))
    with pytest.raises(ExportError, match="bfloat16.*MIXED_PRECISION='float32'"):
        bf16.export(str(tmp_path / "onnx"), "onnx")
    assert not os.path.exists(tmp_path / "onnx")


def test_tflite_matches_detect_or_fails_naming_the_op(model, images, reference, tmp_path):
    """With a Flex-capable interpreter the TFLite export must match detect(); without
    one (this machine's pip wheels) it must fail in one sentence and write nothing."""
    from mrcnn.export import tflite
    try:
        path = model.export(str(tmp_path / "tflite"), "tflite")
    except ExportError as e:
        assert "Flex" in str(e) and str(e).count(". ") == 0, e
        assert not os.path.exists(tmp_path / "tflite")
        pytest.skip(f"TFLite: {e}")
    run = tflite.load(path)
    figures = {}
    for image, ref in zip(images, reference):
        compare(ref, postprocess.to_results(run(image), [image.shape])[0], figures,
                f"tflite {image.shape}")
    record("tflite", figures)


def test_cli_export_from_a_checkpoint(model, tmp_path, images):
    """fashion.py export --weights PATH: names from fashion_run.json travel with it."""
    from fashion.fashion import main
    from fashion.run import write_run_file
    from mrcnn.weights.by_name import save_weights_by_name
    from tests.export_model import ATTRIBUTES, EXTRA, NAMES
    run_dir = tmp_path / "logs" / "fashion20250101T0000"
    run_dir.mkdir(parents=True)
    ckpt = str(run_dir / "mask_rcnn_fashion_0001.h5")
    save_weights_by_name(model.keras_model, ckpt)
    write_run_file(str(run_dir), model.config, dict(EXTRA, class_names=NAMES,
                                                     attribute_names=ATTRIBUTES))
    out = tmp_path / "export"
    assert main(["export", "--weights", ckpt, "--format", "saved_model", "--out",
                 str(out), "--quiet"]) == 0
    with open(out / "1" / "assets" / "labels.json") as f:
        labels = json.load(f)
    assert labels["class_names"] == NAMES and labels["attribute_names"] == ATTRIBUTES
    assert labels["extra"]["category_ids"] == EXTRA["category_ids"]
    assert labels["config"]["MIXED_PRECISION"] == "float32"
    fn = tf.saved_model.load(str(out / "1")).signatures["image_tensor"]
    got = postprocess.to_results(fn(images=tf.constant(images[0][None])), [images[0].shape])
    compare(model.detect([images[0]])[0], got[0], where="cli export")
    assert main(["export", "--weights", ckpt, "--format", "caffe", "--out", str(out),
                 "--quiet"]) == 2

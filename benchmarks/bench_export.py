"""Images/s of the exported SavedModel and ONNX model against detect(), at 512 px.

ResNet50-FPN (default heads), float32, seeded random weights with calibrated batch-norm
statistics (tests/export_model.py) so that detections exist; one image per call.

    python benchmarks/bench_export.py [--size 512] [--images 8] [--no-onnx]
"""
import argparse
import os
import tempfile
import time

from common import cpu_line  # the repo root on sys.path too
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def images_per_second(fn, images, warmup=2):
    for image in images[:warmup]:
        fn(image)
    start = time.perf_counter()
    for image in images:
        fn(image)
    return len(images) / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--no-onnx", action="store_true")
    args = p.parse_args()
    import tensorflow as tf
    from tests.export_model import ExportConfig, build_export_model, smooth_images

    class BenchConfig(ExportConfig):
        NAME = "bench"
        BACKBONE = "resnet50"
        IMAGE_MIN_DIM = args.size
        IMAGE_MAX_DIM = args.size
        RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
        TOP_DOWN_PYRAMID_SIZE = 256
        FPN_CLASSIF_FC_LAYERS_SIZE = 1024
        ATTRIBUTE_FC_SIZE = 512
        POST_NMS_ROIS_INFERENCE = 1000
        PRE_NMS_LIMIT = 6000
        DETECTION_MAX_INSTANCES = 100
        DETECTION_MIN_CONFIDENCE = 0.7

    tmp = tempfile.mkdtemp(prefix="bench_export.")
    model = build_export_model(tmp, config=BenchConfig())
    images = smooth_images(0, [(480, 640), (640, 480)] * (args.images // 2))
    print(f"{cpu_line()}; ResNet50-FPN at {args.size} px, "
          f"{len(images)} images of 640x480, batch 1")
    rates = {"detect()": images_per_second(lambda im: model.detect([im]), images)}
    path = model.export(os.path.join(tmp, "saved_model"), "saved_model")
    fn = tf.saved_model.load(path).signatures["image_tensor"]
    rates["SavedModel image_tensor"] = images_per_second(
        lambda im: fn(images=tf.constant(im[None])), images)
    if not args.no_onnx:
        import onnxruntime as ort
        import tf2onnx
        from mrcnn.export.onnx import SINGLE_IMAGE_SPEC, single_image_fn
        proto, _ = tf2onnx.convert.from_function(single_image_fn(model),
                                                 input_signature=[SINGLE_IMAGE_SPEC],
                                                 opset=17)
        sess = ort.InferenceSession(proto.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        rates["ONNX (onnxruntime)"] = images_per_second(
            lambda im: sess.run(None, {"images": im[None]}), images)
    for name, rate in rates.items():
        print(f"{name:28s} {rate:6.2f} images/s  ({1 / rate:.2f} s/image)")


if __name__ == "__main__":
    main()

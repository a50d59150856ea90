"""Where inference time goes: detect() on one image, then the inference graph cut after
each stage (backbone + FPN, RPN, proposals, box head, detections, mask head), each cut
timed on its own; the differences are the stages' costs.

    python benchmarks/bench_stages.py --size 512 --precision mixed_bfloat16
    python benchmarks/bench_stages.py --size 512 --precision float32

Same model as bench_core.py: ResNet50-FPN, random weights, 47 classes, 1000 proposals,
100 detections, score threshold 0.05.
"""
import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

STAGES = [("backbone + FPN", "fpn_p2"), ("+ RPN", "rpn_class"), ("+ proposals", "ROI"),
          ("+ box head", "mrcnn_class"), ("+ detections", "mrcnn_detection"),
          ("+ mask head", "mrcnn_mask")]


def median(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--precision", default="mixed_bfloat16")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    import keras
    import tensorflow as tf
    from benchmarks.bench_core import make_config
    from mrcnn.model import MaskRCNN
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    model = MaskRCNN("inference", make_config(a.size, a.backbone, precision=a.precision),
                     "/tmp/bench_logs")
    image = np.random.RandomState(0).randint(0, 255, (a.size, a.size, 3)).astype(np.uint8)
    print(f"{a.backbone} {a.size} px {a.precision}: detect() "
          f"{median(lambda: model.detect([image]), a.reps):.3f} s")
    molded, metas, _ = model.mold_inputs([image])
    inputs = [tf.constant(molded, tf.float32), tf.constant(metas, tf.float32),
              tf.constant(model._batch_anchors(molded), tf.float32)]
    km, before = model.keras_model, 0.0
    for label, layer in STAGES:
        cut = keras.Model(km.inputs, km.get_layer(layer).output)
        fn = tf.function(lambda *x, m=cut: m(list(x), training=False), autograph=False)
        t = median(lambda: [np.asarray(v) for v in tf.nest.flatten(fn(*inputs))], a.reps)
        print(f"  {label:16} cumulative {t:.3f} s, stage {max(t - before, 0):.3f} s")
        before = t


if __name__ == "__main__":
    main()

"""Where inference time goes: detect() on one image, then the inference graph cut after
each stage (backbone + FPN, RPN, proposals, box head, detections, mask head), each cut
timed on its own; the differences are the stages' costs.

    python benchmarks/bench_stages.py --size 512 --precision mixed_bfloat16
    python benchmarks/bench_stages.py --size 512 --precision float32

Same model as bench_core.py: ResNet50-FPN, random weights, 47 classes, 1000 proposals,
100 detections, score threshold 0.05.

It also counts the multiply-accumulates (MACs) of every convolution and dense layer at
the shapes this image produces (1000 proposals into the box head, the detections into
the mask head), per stage, and times one 3x3 convolution (256 -> 256 channels at a
quarter of the image side, the FPN's P2) in the same precision: the rate this CPU
reaches on the graph's main operation. MACs / that rate is the time the graph's
convolutions alone would need at that rate, the floor under any implementation of
this architecture here.
"""
import argparse
import os

from common import timed  # the repo root on sys.path too
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

STAGES = [("backbone + FPN", "fpn_p2"), ("+ RPN", "rpn_class"), ("+ proposals", "ROI"),
          ("+ box head", "mrcnn_class"), ("+ detections", "mrcnn_detection"),
          ("+ mask head", "mrcnn_mask")]


def layer_macs(layer, inputs, outputs):
    """MACs of one call of a conv/dense layer from its actual input/output shapes."""
    from keras import layers
    out = float(np.prod(outputs.shape))
    if isinstance(layer, layers.SeparableConv2D):
        kh, kw, cin, mult = layer.depthwise_kernel.shape
        return float(np.prod(outputs.shape[:-1])) * cin * mult * (kh * kw + layer.filters)
    if isinstance(layer, layers.DepthwiseConv2D):
        kh, kw = layer.kernel.shape[:2]
        return out * kh * kw
    if isinstance(layer, layers.Conv2DTranspose):
        kh, kw, cout, _ = layer.kernel.shape
        return float(np.prod(inputs.shape)) * kh * kw * cout
    if isinstance(layer, layers.Conv2D):
        kh, kw, cin_per_group = layer.kernel.shape[:3]
        return out * kh * kw * cin_per_group
    if isinstance(layer, layers.Dense):
        return out * layer.kernel.shape[0]
    return 0.0


def stage_of(name):
    """Stage of a layer by matterport's names."""
    if name.startswith("rpn_"):
        return "+ RPN"
    if name.startswith(("mrcnn_class", "mrcnn_bbox")):
        return "+ box head"
    if name.startswith("mrcnn_"):
        return "+ mask head"  # (and the attribute head, when there is one)
    return "backbone + FPN"


def count_macs(keras_model, inputs):
    """{stage: MACs} of every call of every conv/dense layer on these inputs."""
    import keras
    from keras import layers
    kinds = (layers.Conv2D, layers.Conv2DTranspose, layers.Dense, layers.DepthwiseConv2D,
             layers.SeparableConv2D)
    calls = []  # (layer, input KerasTensor, output KerasTensor), one per call
    for layer in keras_model.layers:
        if isinstance(layer, kinds):
            for node in layer._inbound_nodes:
                calls.append((layer, node.input_tensors[0], node.output_tensors[0]))
    tensors = [t for _, i, o in calls for t in (i, o)]
    values = keras.Model(keras_model.inputs, tensors)(inputs, training=False)
    macs = {}
    for k, (layer, _, _) in enumerate(calls):
        stage = stage_of(layer.name)
        macs[stage] = macs.get(stage, 0.0) + layer_macs(layer, values[2 * k], values[2 * k + 1])
    return macs


def conv_rate(side, precision, reps):
    """MACs per second of one 3x3, 256 -> 256 convolution on [1, side, side, 256]."""
    import tensorflow as tf
    dtype = tf.bfloat16 if "bfloat16" in precision else (
        tf.float16 if "float16" in precision else tf.float32)
    rng = np.random.RandomState(0)
    x = tf.constant(rng.standard_normal((1, side, side, 256)), dtype)
    k = tf.constant(rng.standard_normal((3, 3, 256, 256)) * 0.05, dtype)
    fn = tf.function(lambda x, k: tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME")))
    t = timed(lambda: fn(x, k).numpy(), max(reps, 5)).median
    return side * side * 9 * 256 * 256 / t


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
          f"{timed(lambda: model.detect([image]), a.reps).median:.3f} s")
    molded, metas, _ = model.mold_inputs([image])
    inputs = [tf.constant(molded, tf.float32), tf.constant(metas, tf.float32),
              tf.constant(model._batch_anchors(molded), tf.float32)]
    km, before = model.keras_model, 0.0
    macs = count_macs(km, inputs)
    for label, layer in STAGES:
        cut = keras.Model(km.inputs, km.get_layer(layer).output)
        fn = tf.function(lambda *x, m=cut: m(list(x), training=False), autograph=False)
        t = timed(lambda: [np.asarray(v) for v in tf.nest.flatten(fn(*inputs))],
                  a.reps).median
        stage = max(t - before, 0)
        work = macs.get(label, 0.0) / 1e9
        rate = f", {work:5.1f} GMAC = {work / stage:4.0f} GMAC/s" if work and stage else ""
        print(f"  {label:16} cumulative {t:.3f} s, stage {stage:.3f} s{rate}")
        before = t
    total = sum(macs.values()) / 1e9
    rate = conv_rate(a.size // 4, model.precision or "float32", a.reps) / 1e9
    print(f"convolutions and dense layers: {total:.1f} GMAC; one 3x3 256->256 convolution at "
          f"{a.size // 4} px runs at {rate:.0f} GMAC/s here, so the graph's layers alone need "
          f"{total / rate:.3f} s at that rate (detect() takes the time above)")


if __name__ == "__main__":
    main()

"""Subprocess worker for tests/test_distribute.py (needs a fresh TensorFlow process).

    python tests/distribute_worker.py mirrored OUT_DIR     # 2 logical CPUs
    python tests/distribute_worker.py multiworker OUT_DIR  # TF_CONFIG set by the caller
    srun -n 2 python tests/distribute_worker.py slurm OUT_DIR  # a task of a Slurm step
    python tests/distribute_worker.py reference OUT_DIR    # one process, beside `slurm`
    srun -n 2 python tests/distribute_worker.py long OUT_DIR  # trains until SIGTERM

Each mode prints one JSON line starting with "RESULT " that the tests read.
"""
import json
import logging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn.config import Config  # noqa: E402


class DistConfig(Config):
    """ResNet18 at 64 px; every positive ROI kept, so ROI sampling is deterministic."""
    NAME = "dist"
    NUM_CLASSES = 1 + 3
    IMAGES_PER_GPU = 2
    BACKBONE = "resnet18"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    # With the ratio 1 and as many training ROIs as proposals, DetectionTargetLayer
    # keeps every positive proposal (and no negatives): no random subset.
    TRAIN_ROIS_PER_IMAGE = 24
    POST_NMS_ROIS_TRAINING = 24
    ROI_POSITIVE_RATIO = 1.0
    POST_NMS_ROIS_INFERENCE = 24
    PRE_NMS_LIMIT = 200
    MAX_GT_INSTANCES = 4
    MINI_MASK_SHAPE = (14, 14)
    MASK_POOL_SIZE = 7
    MASK_SHAPE = [14, 14]
    # PointRend (the scaled layout's default) draws random training points, which no
    # two processes draw alike: the equality checks need the 28x28 head's determinism.
    MASK_HEAD = "matterport"
    POOL_SIZE = 5
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    # Replica-equality checks compare float32 numerics on every machine ("auto" would
    # pick bfloat16 on CPUs with avx512_bf16).
    MIXED_PRECISION = "float32"
    LR_SCHEDULE = "constant"
    TRAIN_BN = False
    LEARNING_RATE = 0.02
    GRADIENT_CLIP_NORM = 0.5   # small, so the global-gradient clipping matters


def shapes(count, seed):
    from samples.shapes.shapes import ShapesDataset
    d = ShapesDataset()
    d.load_shapes(count, 64, 64, seed=seed)
    d.prepare()
    return d


def emit(result):
    print("RESULT " + json.dumps(result), flush=True)


def _fit_steps(mrcnn_model, batches, config, dataset=None):
    """Compiles as MaskRCNN.train does and fits the given global batches in order
    (or `dataset`, already distributed, of as many steps)."""
    import keras

    from mrcnn.training import make_optimizer, set_trainable
    steps = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append({k: float(v) for k, v in (logs or {}).items()})

    km = mrcnn_model.keras_model
    set_trainable(km, ".*")
    with mrcnn_model._scope():
        km.compile(optimizer=make_optimizer(config, config.LEARNING_RATE), jit_compile=False)
    ds = dataset or tf.data.Dataset.from_tensor_slices(batches).batch(config.BATCH_SIZE)
    km.fit(ds, epochs=1, steps_per_epoch=len(batches["input_image"]) // config.BATCH_SIZE,
           callbacks=[Record()], verbose=0)
    return steps


def mirrored(out_dir):
    """Mirrored on 2 logical CPUs vs one device on identical global batches; then a
    staged (heads -> all) run from TFRecords under the same strategy."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    from mrcnn.data.pipeline import make_input_dataset
    from mrcnn.data.tfrecords import read_tfrecords, write_tfrecords
    from mrcnn.distribute import get_strategy
    from mrcnn.model import MaskRCNN
    t0 = time.time()
    tf.keras.utils.set_random_seed(1)
    files = write_tfrecords(shapes(8, seed=3), DistConfig(), os.path.join(out_dir, "rec",
                                                                           "train"), 2)
    # Two different pairs of images [A, B], [C, D]; the global batches are
    # [A, B, A, B] and [C, D, C, D], so each replica sees [A, B] (resp. [C, D]) and
    # the count-normalised losses of a replica equal those of the global batch.
    pairs = next(iter(make_input_dataset(read_tfrecords(files, DistConfig()), DistConfig(),
                                         4)))
    pairs = {k: v.numpy() for k, v in pairs.items()}                     # [4, ...]
    order = [0, 1, 0, 1, 2, 3, 2, 3]
    batches = {k: v[order] for k, v in pairs.items()}                    # [8, ...]

    single_cfg = DistConfig()
    single_cfg.IMAGES_PER_GPU = 4
    single_cfg.__init__()                                                # BATCH_SIZE 4
    single = MaskRCNN("training", single_cfg, os.path.join(out_dir, "single"))
    init = single.keras_model.get_weights()

    strategy = get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    mir_cfg = DistConfig()                                               # 2 per replica
    model = MaskRCNN("training", mir_cfg, os.path.join(out_dir, "mirrored"),
                     strategy=strategy)
    model.keras_model.set_weights(init)
    t_build = time.time() - t0

    t1 = time.time()
    single_logs = _fit_steps(single, batches, single_cfg)
    t_single = time.time() - t1
    t1 = time.time()
    mirrored_logs = _fit_steps(model, batches, mir_cfg)
    t_mirrored = time.time() - t1
    ws, wm = single.keras_model.get_weights(), model.keras_model.get_weights()
    moved = max(float(np.abs(a - b).max()) for a, b in zip(ws, init))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ws, wm))

    # Staged training under the strategy: heads for one epoch, then all layers.
    t1 = time.time()
    names = {w.path: i for i, w in enumerate(model.keras_model.weights)}
    backbone = [i for p, i in names.items() if p.startswith("res2a_branch2a")]
    before = model.keras_model.get_weights()
    h1 = model.train(os.path.join(out_dir, "rec", "train-*"), None, mir_cfg.LEARNING_RATE,
                     epochs=1, layers="heads", verbose=0)
    after_heads = model.keras_model.get_weights()
    h2 = model.train(os.path.join(out_dir, "rec", "train-*"), None,
                     mir_cfg.LEARNING_RATE / 10, epochs=2, layers="all", verbose=0)
    after_all = model.keras_model.get_weights()
    ckpts = sorted(os.listdir(model.log_dir))
    emit({
        "replicas": strategy.num_replicas_in_sync, "gpu_count": mir_cfg.GPU_COUNT,
        "batch_size": mir_cfg.BATCH_SIZE, "single_logs": single_logs,
        "mirrored_logs": mirrored_logs, "weights_moved": moved, "weights_diff": diff,
        "backbone_frozen_in_heads": all(np.array_equal(before[i], after_heads[i])
                                        for i in backbone) and bool(backbone),
        "backbone_trained_in_all": any(not np.array_equal(after_heads[i], after_all[i])
                                       for i in backbone),
        "stage_losses": [h1.history["loss"], h2.history["loss"]], "epoch": model.epoch,
        "files": ckpts, "times": {"build": t_build, "single_2_steps": t_single,
                                  "mirrored_2_steps": t_mirrored,
                                  "staged": time.time() - t1},
    })


def multiworker(out_dir):
    """One worker of TF_CONFIG's cluster: 2 steps from TFRecords, checkpoint by chief."""
    from mrcnn.distribute import get_strategy, worker_index
    strategy = get_strategy("multiworker")          # first: before other TF work
    from mrcnn.distribute import is_chief
    from mrcnn.model import MaskRCNN
    messages = []

    class Capture(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())
    logging.getLogger("mrcnn").addHandler(Capture())
    logging.getLogger("mrcnn").setLevel(logging.INFO)
    t0 = time.time()
    tf.keras.utils.set_random_seed(7)              # same initial weights everywhere
    config = DistConfig()
    config.IMAGES_PER_GPU = 1
    model = MaskRCNN("training", config, os.path.join(out_dir, "logs"), strategy=strategy)
    history = model.train(os.path.join(out_dir, "rec", "train-*.tfrecord"), None,
                          config.LEARNING_RATE, epochs=1, layers="all", verbose=0)
    weights = model.keras_model.get_weights()
    emit({"chief": is_chief(strategy), "worker": list(worker_index(strategy)),
          "replicas": strategy.num_replicas_in_sync, "batch_size": config.BATCH_SIZE,
          "loss": history.history["loss"], "steps": model.epoch,
          "checksum": float(sum(float(np.abs(w).sum()) for w in weights)),
          "sharding": [m for m in messages if "TFRecord files" in m],
          "seconds": time.time() - t0})


def global_batches(out_dir):
    """Two global batches [A, B, A, B], [C, D, C, D] of four fixed shapes images: each of
    two replicas of 2 images sees [A, B] (then [C, D]), as one process of 4 images does,
    so count-normalised losses agree (see mirrored())."""
    from mrcnn.data.pipeline import make_input_dataset
    from mrcnn.data.tfrecords import read_tfrecords, write_tfrecords
    files = write_tfrecords(shapes(4, seed=3), DistConfig(), os.path.join(out_dir, "rec"), 1)
    pairs = next(iter(make_input_dataset(read_tfrecords(files, DistConfig()), DistConfig(),
                                         4)))
    order = [0, 1, 0, 1, 2, 3, 2, 3]
    return {k: v.numpy()[order] for k, v in pairs.items()}                # [8, ...]


def _load_npz(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def _wait_for(path, seconds=600):
    deadline = time.time() + seconds
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(f"{path} did not appear within {seconds} s")
        time.sleep(0.2)


def worker_slices(strategy, batches, config):
    """Worker i's replica reads images [2i, 2i + 1] of every global batch of 4: the
    split is set here, not left to tf.data's auto-sharding."""
    def per_worker(context):
        size = context.get_per_replica_batch_size(config.BATCH_SIZE)        # 2
        index = np.concatenate([np.arange(start, start + size) + context.input_pipeline_id
                                * size for start in range(0, len(batches["input_image"]),
                                                          config.BATCH_SIZE)])
        mine = {k: v[index] for k, v in batches.items()}                  # [4, ...]
        return tf.data.Dataset.from_tensor_slices(mine).batch(size)
    return strategy.distribute_datasets_from_function(per_worker)


def slurm(out_dir):
    """One task of a 2-task Slurm step: --strategy auto must build the multi-worker
    strategy from Slurm's environment; 2 steps of global batch 4 (2 per worker) from
    the reference process's initial weights and batches (init.npz, batches.npz); every
    worker saves its final weights as final_<worker>.npz."""
    from mrcnn.distribute import get_strategy, is_chief, worker_index
    strategy = get_strategy("auto")                 # first: before other TF work
    from mrcnn.model import MaskRCNN
    index, count = worker_index(strategy)
    config = DistConfig()                           # 2 images per replica
    model = MaskRCNN("training", config, os.path.join(out_dir, "logs"), strategy=strategy)
    _wait_for(os.path.join(out_dir, "init.npz"))   # written after batches.npz
    model.keras_model.set_weights(_load_npz(os.path.join(out_dir, "init.npz")))
    with np.load(os.path.join(out_dir, "batches.npz")) as f:  # RPN targets are sampled
        batches = {k: f[k] for k in f.files}                  # randomly: use the same
    logs = _fit_steps(model, batches, config, worker_slices(strategy, batches, config))
    part = os.path.join(out_dir, f"final_{index}.part.npz")
    np.savez(part, *model.keras_model.get_weights())
    os.replace(part, os.path.join(out_dir, f"final_{index}.npz"))
    emit({"strategy": type(strategy).__name__, "worker": [index, count],
          "chief": is_chief(strategy), "replicas": strategy.num_replicas_in_sync,
          "batch_size": config.BATCH_SIZE, "logs": logs,
          "task": [strategy.cluster_resolver.task_type, strategy.cluster_resolver.task_id],
          "cluster": strategy.cluster_resolver.cluster_spec().as_dict()})


def reference(out_dir):
    """One process, no strategy: writes batches.npz and init.npz (the Slurm job's
    inputs and starting weights), trains the same two global batches, then compares
    its final weights with every worker's final_<worker>.npz once they exist."""
    import tempfile

    from mrcnn.model import MaskRCNN
    tf.keras.utils.set_random_seed(7)
    batches = global_batches(tempfile.mkdtemp(prefix="slurm_reference_"))
    config = DistConfig()
    config.IMAGES_PER_GPU = 4
    config.__init__()                               # BATCH_SIZE 4
    model = MaskRCNN("training", config, os.path.join(out_dir, "reference"))
    init = model.keras_model.get_weights()
    np.savez(os.path.join(out_dir, "batches.part.npz"), **batches)
    os.replace(os.path.join(out_dir, "batches.part.npz"),
               os.path.join(out_dir, "batches.npz"))
    np.savez(os.path.join(out_dir, "init.part.npz"), *init)
    os.replace(os.path.join(out_dir, "init.part.npz"), os.path.join(out_dir, "init.npz"))
    logs = _fit_steps(model, batches, config)
    mine = model.keras_model.get_weights()
    diffs = []
    for index in range(2):
        path = os.path.join(out_dir, f"final_{index}.npz")
        _wait_for(path)                             # renamed into place when complete
        diffs.append(max(float(np.abs(a - b).max()) for a, b in zip(mine, _load_npz(path))))
    emit({"logs": logs, "weights_diff": diffs,
          "weights_moved": max(float(np.abs(a - b).max()) for a, b in zip(mine, init))})


def long(out_dir):
    """Trains with model.train for up to 100 epochs of 2 steps under --strategy auto
    (a Slurm step of 2 tasks: multi-worker), until stopped by SIGTERM."""
    from mrcnn.distribute import get_strategy, worker_index
    strategy = get_strategy("auto")                 # first: before other TF work
    from mrcnn.model import MaskRCNN
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tf.keras.utils.set_random_seed(3)
    config = DistConfig()
    config.IMAGES_PER_GPU = 1
    model = MaskRCNN("training", config, os.path.join(out_dir, "logs"), strategy=strategy)
    model.train(shapes(4, seed=5), None, config.LEARNING_RATE, epochs=100, layers="heads",
                verbose=2)
    emit({"worker": list(worker_index(strategy)), "epoch": model.epoch,
          "stopped_by_signal": model.stopped_by_signal})


if __name__ == "__main__":
    {"mirrored": mirrored, "multiworker": multiworker, "slurm": slurm,
     "reference": reference, "long": long}[sys.argv[1]](sys.argv[2])

"""Strategy selection for scale-out training with tf.distribute.

``get_strategy(name)`` returns a tf.distribute strategy (or None for the default,
single-device one):

- ``"auto"``: multi-worker when ``TF_CONFIG`` describes more than one task, mirrored
  when more than one GPU is visible, else None.
- ``"default"``: None (one device, no strategy).
- ``"mirrored"``: ``MirroredStrategy`` over the local GPUs (or ``devices``).
- ``"multiworker"``: ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``.
- ``"tpu"``: ``TPUStrategy`` for the TPU ``tpu`` (a name or ``grpc://host:port``).

Config keeps matterport's meaning: one replica is one "GPU", so
``configure_for_strategy`` sets ``GPU_COUNT`` to the number of replicas and the global
batch ``BATCH_SIZE = IMAGES_PER_GPU * GPU_COUNT``. The learning rate is the user's.

Example:
    strategy = get_strategy("auto")
    model = MaskRCNN("training", config, "logs", strategy=strategy)  # sets GPU_COUNT
    model.train("gs://bucket/train-*.tfrecord", None, config.LEARNING_RATE, 10, "heads")
"""
import json
import logging
import os
import socket
import urllib.error

import tensorflow as tf

log = logging.getLogger("mrcnn")

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


class StrategyError(RuntimeError):
    """A strategy that cannot be set up (no TPU, bad TF_CONFIG, ...)."""


# ---------------------------------------------------------------------- TF_CONFIG
def read_tf_config(environ=None):
    """The parsed ``TF_CONFIG`` dict, or None when it is unset; clear errors otherwise."""
    text = (environ if environ is not None else os.environ).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({e.msg} at character {e.pos}); "
                            'set it to {"cluster": {"worker": ["host:port", ...]}, '
                            '"task": {"type": "worker", "index": 0}}.') from None
    cluster, task = cfg.get("cluster"), cfg.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise StrategyError('TF_CONFIG has no "cluster" mapping of job names to '
                            '"host:port" lists; add one, e.g. {"worker": ["h1:2222", '
                            '"h2:2222"]}.')
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise StrategyError('TF_CONFIG has no "task" with "type" and "index"; add e.g. '
                            '"task": {"type": "worker", "index": 0} (a different index '
                            "on every host).")
    jobs = cluster.get(task["type"])
    if not jobs or not 0 <= int(task["index"]) < len(jobs):
        raise StrategyError(f"TF_CONFIG task {task['type']}:{task['index']} is not in its "
                            f"cluster ({ {k: len(v) for k, v in cluster.items()} }); use an "
                            "index below the number of hosts listed for that job.")
    return cfg


def _cluster_size(tf_config):
    if not tf_config:
        return 0
    return sum(len(v) for k, v in tf_config["cluster"].items() if k in ("chief", "worker"))


# ---------------------------------------------------------------------- TPU
def _probe(address, timeout=5.0):
    """Raises OSError when nothing listens at grpc://host:port (bounded time)."""
    hostport = address.split("://", 1)[-1].split(",")[0]
    host, _, port = hostport.rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
        pass


def _tpu_strategy(tpu):
    where = tpu or os.environ.get("TPU_NAME") or "(none given)"
    hint = ("check --tpu (a Cloud TPU name in this project and zone, 'local' on a TPU VM, "
            "or grpc://host:8470), that the TPU is READY and that this machine can reach it")
    if not tpu and not os.environ.get("TPU_NAME"):
        raise StrategyError("--strategy tpu needs --tpu NAME_OR_GRPC (or TPU_NAME); "
                            + hint + ".")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        master = resolver.master()
        if master.startswith("grpc://"):
            _probe(master)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    except (IndexError, ValueError, OSError, urllib.error.URLError,
            tf.errors.NotFoundError, tf.errors.UnavailableError,
            tf.errors.InvalidArgumentError) as e:
        raise StrategyError(f"Could not reach TPU {where}: {type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'}; "
                            + hint + ".") from e
    log.info("TPU %s: %d cores", where, strategy.num_replicas_in_sync)
    return strategy


# ---------------------------------------------------------------------- strategies
def get_strategy(name="auto", tpu=None, devices=None):
    """A tf.distribute strategy by name (see the module docstring), or None."""
    name = (name or "auto").lower()
    if name not in STRATEGIES:
        raise ValueError(f"--strategy {name!r} is unknown; use one of "
                         f"{', '.join(STRATEGIES)}.")
    if name == "tpu" or (name == "auto" and tpu):
        return _tpu_strategy(tpu)
    if name == "default":
        return None
    tf_config = read_tf_config()
    if name == "multiworker" or (name == "auto" and _cluster_size(tf_config) > 1):
        if tf_config is None:
            raise StrategyError("--strategy multiworker needs TF_CONFIG describing the "
                                "cluster and this host's task; see docs/distributed.md.")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        log.info("Multi-worker strategy: task %s:%s, %d replicas in sync",
                 tf_config["task"]["type"], tf_config["task"]["index"],
                 strategy.num_replicas_in_sync)
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        log.info("Mirrored strategy over %d replicas", strategy.num_replicas_in_sync)
        return strategy
    if devices and len(devices) > 1 or len(gpus) > 1:  # auto
        return tf.distribute.MirroredStrategy(devices=devices)
    return None


def num_replicas(strategy):
    return strategy.num_replicas_in_sync if strategy is not None else 1


def configure_for_strategy(config, strategy):
    """Sets config.GPU_COUNT to the strategy's replicas and recomputes BATCH_SIZE.

    Returns the config. IMAGES_PER_GPU stays the per-replica batch; the learning rate
    is not changed (scale it yourself if you want the linear scaling rule).
    """
    replicas = num_replicas(strategy)
    if config.GPU_COUNT != replicas:
        log.info("GPU_COUNT %d -> %d (replicas in sync); global batch %d x %d = %d",
                 config.GPU_COUNT, replicas, config.IMAGES_PER_GPU, replicas,
                 config.IMAGES_PER_GPU * replicas)
    config.GPU_COUNT = replicas
    config.BATCH_SIZE = config.IMAGES_PER_GPU * replicas
    if isinstance(strategy, tf.distribute.TPUStrategy) and not config.STATIC_SHAPES:
        log.info("STATIC_SHAPES -> True: TPUs compile the graph with XLA")
        config.STATIC_SHAPES = True
    return config


def is_tpu(strategy):
    return isinstance(strategy, tf.distribute.TPUStrategy)


def worker_index(strategy):
    """(index, count) of this worker among the workers of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy else None
    if resolver is None or not getattr(resolver, "task_type", None) or is_tpu(strategy):
        return 0, 1
    jobs = resolver.cluster_spec().as_dict()
    chiefs = len(jobs.get("chief", []))
    count = chiefs + len(jobs.get("worker", []))
    if resolver.task_type == "chief":
        return 0, max(count, 1)
    if resolver.task_type == "worker":
        return chiefs + int(resolver.task_id), count
    return 0, 1  # evaluators and parameter servers read everything


# ---------------------------------------------------------------------- input
def is_file_pattern(data):
    """True for a TFRecord file pattern (str) or a list of TFRecord paths."""
    if isinstance(data, (str, os.PathLike)):
        return True
    return isinstance(data, (list, tuple)) and bool(data) and all(
        isinstance(d, (str, os.PathLike)) for d in data)


def worker_records(file_pattern, config, strategy=None):
    """TFRecords -> (tf.data of record dicts for this worker, pre_sharded).

    With several workers and at least as many files, each worker reads its own files
    (file i goes to worker i % workers) and the result is marked pre-sharded, so
    tf.data does not shard it again. With fewer files than workers every worker reads
    all files and tf.data shards by element (DATA), which is correct but decodes
    every record on every worker: write at least one shard per worker.
    """
    from mrcnn.data.tfrecords import expand_files, read_tfrecords
    files = expand_files(file_pattern)
    index, count = worker_index(strategy)
    if count > 1 and len(files) >= count:
        mine = files[index::count]
        log.info("Worker %d of %d reads %d of %d TFRecord files", index, count,
                 len(mine), len(files))
        return read_tfrecords(mine, config, deterministic=False, shuffle_files=True), True
    if count > 1:
        log.warning("%d TFRecord file(s) for %d workers: every worker decodes every "
                    "record; write at least %d shards for file sharding.",
                    len(files), count, count)
    return read_tfrecords(files, config, deterministic=False, shuffle_files=True), False


def set_shard_policy(dataset, policy):
    """Returns dataset with tf.data's auto-shard policy set (e.g. OFF or FILE)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return dataset.with_options(options)


def check_tpu_inputs(data, config, augmentation):
    """Raises ValueError when TPU training would need Python work per step."""
    if config.IMAGE_RESIZE_MODE not in ("square", "crop"):
        raise ValueError(f"TPU training needs fixed image shapes, but IMAGE_RESIZE_MODE is "
                         f"{config.IMAGE_RESIZE_MODE!r}; use 'square' or 'crop'.")
    if augmentation is not None and augmentation != "flip":
        raise ValueError("imgaug augmentation runs Python per sample, which a TPU cannot "
                         "do; use augmentation='flip' (in-graph) or None with TPUs.")
    if not (is_file_pattern(data) or isinstance(data, tf.data.Dataset)):
        raise ValueError(f"TPU training reads TFRecords, not a {type(data).__name__}; "
                         "write them with mrcnn.data.tfrecords.write_tfrecords and "
                         "pass the file pattern.")


def fixed_shape_inputs(file_pattern, config, batch_size=None, flip=False, repeat=True):
    """TFRecords -> batched training inputs where every dimension is static (TPU/XLA).

    Images are padded to IMAGE_SHAPE, ground truth to MAX_GT_INSTANCES, RPN targets to
    RPN_TRAIN_ANCHORS_PER_IMAGE, the batch dimension is fixed (drop_remainder).
    """
    from mrcnn.data.pipeline import make_input_dataset
    from mrcnn.data.tfrecords import read_tfrecords
    check_tpu_inputs(file_pattern, config, "flip" if flip else None)
    batch_size = int(batch_size or config.BATCH_SIZE)
    records = read_tfrecords(file_pattern, config, deterministic=False)
    records = records.repeat() if repeat else records
    ds = make_input_dataset(records, config, batch_size, flip=flip, drop_remainder=True)
    shapes = input_shapes(config, batch_size)
    return ds.map(lambda x: {k: tf.ensure_shape(v, shapes[k]) for k, v in x.items()})


def input_shapes(config, batch_size):
    """The static shape of every training input, batch included: name -> list."""
    from mrcnn.utils import norm_anchors
    h, w = int(config.IMAGE_SHAPE[0]), int(config.IMAGE_SHAPE[1])
    g = config.MAX_GT_INSTANCES
    mask = list(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK else [h, w]
    shapes = {
        "input_image": [h, w, 3],
        "input_image_meta": [config.IMAGE_META_SIZE],
        "input_rpn_match": [norm_anchors(config, (h, w)).shape[0], 1],
        "input_rpn_bbox": [config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4],
        "input_gt_class_ids": [g],
        "input_gt_boxes": [g, 4],
        "input_gt_masks": mask + [g],
    }
    if config.NUM_ATTRIBUTES:
        shapes["input_gt_attributes"] = [g, config.NUM_ATTRIBUTES]
    return {k: [batch_size] + v for k, v in shapes.items()}


def is_chief(strategy):
    """True unless this is a non-chief worker of a multi-worker strategy."""
    if strategy is None:
        return True
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())

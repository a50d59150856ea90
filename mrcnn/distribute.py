"""Strategy selection for scale-out training with tf.distribute.

``get_strategy(name)`` returns a tf.distribute strategy (or None for the default,
single-device one):

- ``"auto"``: multi-worker when ``TF_CONFIG`` describes more than one task, or when
  this process is one of several tasks of a Slurm job step (``srun``); mirrored when
  more than one GPU is visible; else None.
- ``"default"``: None (one device, no strategy).
- ``"mirrored"``: ``MirroredStrategy`` over the local GPUs (or ``devices``).
- ``"multiworker"``: ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``, else from the
  Slurm step's environment (``slurm_resolver``: tasks, nodes, reserved ports, GPUs
  per task). ``TF_CONFIG`` wins where both are set; one Slurm task is one host.
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


# ---------------------------------------------------------------------- Slurm
SLURM_PORT_BASE = 20000   # without reserved ports: 20000 + 8 * (job id % 5000)


def slurm_tasks(environ=None):
    """Number of tasks of the Slurm job step this process belongs to (``srun``); 0 when
    it is not a task of a step (no Slurm, or the batch script itself)."""
    env = environ if environ is not None else os.environ
    text = env.get("SLURM_STEP_NUM_TASKS", "").strip()
    if not text:
        return 0
    if not text.isdigit():
        raise StrategyError(f"SLURM_STEP_NUM_TASKS is {text!r}, not a number of tasks; "
                            "start training with srun inside the job, not by hand.")
    return int(text)


def _slurm_var(env, name, fix):
    value = env.get(name, "").strip()
    if not value:
        raise StrategyError(f"{name} is not set although SLURM_STEP_NUM_TASKS is "
                            f"{env.get('SLURM_STEP_NUM_TASKS')}; {fix}")
    return value


def _slurm_ports(env, per_node):
    """The first port of this step's range on every node, checked against per_node."""
    text = env.get("SLURM_STEP_RESV_PORTS", "").strip()
    if not text:
        job = env.get("SLURM_JOB_ID", "0").strip()
        return SLURM_PORT_BASE + 8 * (int(job) % 5000 if job.isdigit() else 0)
    first = text.split(",")[0]
    low, _, high = first.partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        raise StrategyError(f"SLURM_STEP_RESV_PORTS is {text!r}, not a port range such "
                            "as 12000-12007; check MpiParams=ports in slurm.conf.")
    count = int(high or low) - int(low) + 1
    if count < per_node:
        raise StrategyError(f"SLURM_STEP_RESV_PORTS {text!r} holds {count} port(s) for "
                            f"{per_node} tasks on one node; widen MpiParams=ports in "
                            "slurm.conf or run fewer tasks per node.")
    return int(low)


def _visible_gpus(env):
    """GPU ids this task may use: CUDA_VISIBLE_DEVICES as Slurm set it, else 0..n-1
    for SLURM_GPUS_ON_NODE, else none (CPU)."""
    visible = [g for g in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    if visible:
        return visible
    count = env.get("SLURM_GPUS_ON_NODE", "").strip()
    return [str(i) for i in range(int(count))] if count.isdigit() else []


def slurm_resolver(environ=None):
    """A ``SlurmClusterResolver`` for this task of a Slurm step, checked first.

    Tasks come from ``SLURM_STEP_NUM_TASKS``/``SLURM_PROCID``, nodes from
    ``SLURM_STEP_NODELIST`` and ``SLURM_STEP_TASKS_PER_NODE``, ports from
    ``SLURM_STEP_RESV_PORTS`` (slurm.conf ``MpiParams=ports=...``; else a range derived
    from the job id). With GPUs, the node's GPUs are split evenly between its tasks and
    this task's share is set in ``CUDA_VISIBLE_DEVICES``; on CPUs every task is one
    replica. An inconsistent environment raises StrategyError naming the variable.
    """
    from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as scr
    env = environ if environ is not None else os.environ
    tasks = slurm_tasks(env)
    fix = "start training with srun inside the job (not ssh), as in docs/distributed.md."
    rank = _slurm_var(env, "SLURM_PROCID", fix)
    nodes = _slurm_var(env, "SLURM_STEP_NODELIST", fix)
    per_node = _slurm_var(env, "SLURM_STEP_TASKS_PER_NODE", fix)
    try:
        hosts = scr.expand_hostlist(nodes)
    except ValueError:
        raise StrategyError(f"SLURM_STEP_NODELIST {nodes!r} is not a Slurm host list "
                            "such as node[01-04]; " + fix) from None
    try:
        counts = scr.expand_tasks_per_node(per_node)
    except ValueError:
        raise StrategyError(f"SLURM_STEP_TASKS_PER_NODE {per_node!r} is not a task "
                            "count list such as 2(x4); " + fix) from None
    if len(counts) != len(hosts) or sum(counts) != tasks or not 0 <= int(rank) < tasks:
        raise StrategyError(f"SLURM_STEP_TASKS_PER_NODE {per_node!r} and "
                            f"SLURM_STEP_NODELIST {nodes!r} do not add up to "
                            f"SLURM_STEP_NUM_TASKS {tasks} with SLURM_PROCID {rank}; "
                            + fix)
    most = max(counts)
    port_base = _slurm_ports(env, most)
    gpus = _visible_gpus(env)
    if gpus and len(gpus) < most:
        raise StrategyError(f"{most} tasks per node (SLURM_STEP_TASKS_PER_NODE "
                            f"{per_node!r}) share {len(gpus)} GPU(s); run at most one "
                            "task per GPU (--ntasks-per-node).")
    per_task = len(gpus) // most if gpus else 1

    class Resolver(scr.SlurmClusterResolver):  # reads `env`, not only os.environ
        def _resolve_own_rank(self):
            return int(rank)

        def num_accelerators(self, task_type=None, task_id=None, config_proto=None):
            return {"GPU": per_task} if gpus else {}

    # On CPUs every task gets one "GPU" slot here only so the resolver's per-node
    # loop lists each task; num_accelerators reports none and nothing is pinned.
    resolver = Resolver(jobs={"worker": tasks}, port_base=port_base,
                        gpus_per_node=len(gpus) if gpus else most, gpus_per_task=per_task,
                        tasks_per_node=dict(zip(hosts, counts)), auto_set_gpu=False)
    address = resolver.cluster_spec().task_address(resolver.task_type, resolver.task_id)
    here = env.get("SLURMD_NODENAME", "").strip()
    if here and address.rpartition(":")[0] != here:
        raise StrategyError(f"task {rank} runs on {here} but Slurm's block order puts it "
                            f"at {address}; submit with --distribution=block.")
    if gpus and most > 1:
        local = int(env.get("SLURM_LOCALID", "0"))
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(
            gpus[local * per_task:(local + 1) * per_task])
    return resolver


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
    tasks = 0 if tf_config else slurm_tasks()
    if name == "multiworker" or (name == "auto" and (_cluster_size(tf_config) > 1
                                                     or tasks > 1)):
        return _multiworker(tf_config, tasks)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        log.info("Mirrored strategy over %d replicas", strategy.num_replicas_in_sync)
        return strategy
    if devices and len(devices) > 1 or len(gpus) > 1:  # auto
        return tf.distribute.MirroredStrategy(devices=devices)
    return None


def _multiworker(tf_config, tasks):
    """MultiWorkerMirroredStrategy from TF_CONFIG, else from the Slurm step."""
    if tf_config is None and not tasks:
        raise StrategyError("--strategy multiworker needs TF_CONFIG describing the "
                            "cluster and this host's task, or a start with srun inside "
                            "a Slurm job; see docs/distributed.md.")
    resolver = None if tf_config else slurm_resolver()
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    task = (tf_config["task"] if tf_config else
            {"type": resolver.task_type, "index": resolver.task_id})
    log.info("Multi-worker strategy (%s): task %s:%s, %d replicas in sync",
             "TF_CONFIG" if tf_config else "Slurm", task["type"], task["index"],
             strategy.num_replicas_in_sync)
    return strategy


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

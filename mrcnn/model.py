"""MaskRCNN: the user-facing facade, with matterport's constructor and methods.

Example:
    model = MaskRCNN(mode="training", config=config, model_dir="logs")
    model.load_weights("mask_rcnn_coco.h5", by_name=True,
                       exclude=["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox",
                                "mrcnn_mask"])
    model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE,
                epochs=40, layers="heads")
    model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE / 10,
                epochs=120, layers="all")
    # ... later, for inference:
    model = MaskRCNN(mode="inference", config=config, model_dir="logs")
    model.load_weights(model.find_last())
    r = model.detect([image])[0]   # rois, class_ids, scores, masks
"""
import datetime
import errno
import itertools
import logging
import os
import re

import keras
import numpy as np
import tensorflow as tf

from mrcnn import distribute, graph, inference, utils
from mrcnn.training.callbacks import training_callbacks
from mrcnn.training.callbacks import AtomicCheckpoint, BudgetProgress, StopOnSignal, TimeBudget
from mrcnn.training.checkpoints import EarlyStopping, epoch_checkpoints
from mrcnn.training.ema import AverageIn, AverageOut
from mrcnn.data.pipeline import NoUsableSamples, SkipCounter, training_inputs
from mrcnn.training.precision import resolve_precision
from mrcnn.training.schedules import BudgetedLearningRate
from mrcnn.training.trainer import (MaskRCNNTrainModel, layers_regex, make_optimizer,
                            set_trainable)
from mrcnn.utils import norm_anchors
from mrcnn.weights.by_name import is_keras3_file, load_weights_by_name

log = logging.getLogger("mrcnn")

# A run directory: <name>YYYYMMDDTHHMM (matterport's, to the minute) or
# <name>YYYYMMDDTHHMMSS with an optional _N when that second already had a run.
_RUN_STAMP = r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})?(?:_(\d+))?"
_RUN_DIR_RE = re.compile(r"^[\w-]+?" + _RUN_STAMP + "$")
# .../<run dir>/mask_rcnn_<name>_<epoch>.h5; the epoch is the group named "epoch".
_CHECKPOINT_RE = re.compile(
    r".*[/\\][\w-]+?" + _RUN_STAMP + r"[/\\]mask\_rcnn\_[\w-]+(?P<epoch>\d{4})\.h5$")


# Write errors that TensorFlow's own file writers report inside an OpError message.
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class MaskRCNN:
    """Mask R-CNN in "training" or "inference" mode.

    Args:
        mode: "training" or "inference".
        config: a mrcnn.config.Config (subclass) instance.
        model_dir: directory for training logs and checkpoints.
        strategy: optional tf.distribute strategy; the model is built and trained in
            its scope (see mrcnn.distribute.get_strategy).
    """

    def __init__(self, mode, config, model_dir, strategy=None):
        if mode not in ("training", "inference"):
            raise ValueError(f"mode is {mode!r}; use 'training' or 'inference'.")
        self.mode = mode
        self.config = config
        self.model_dir = model_dir
        self.strategy = strategy
        self.epoch = 0
        self.skips = SkipCounter()
        self._infer_fn = None
        if strategy is not None:
            # One replica is one "GPU": the global batch is IMAGES_PER_GPU x replicas.
            distribute.configure_for_strategy(config, strategy)
        self.set_log_dir()
        # Layers take the policy when built; the global policy is restored afterwards.
        self.precision = resolve_precision(config.MIXED_PRECISION, mode=mode)
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(self.precision)
        try:
            with self._scope():
                self.keras_model = self.build(mode=mode, config=config)
        finally:
            keras.mixed_precision.set_global_policy(previous)

    def _scope(self):
        return self.strategy.scope() if self.strategy is not None else _NullScope()

    # ------------------------------------------------------------------ building
    def build(self, mode, config):
        """Builds the Keras model of the given mode (matterport's build)."""
        if mode == "training":
            inputs, outputs = graph.build_training_graph(config)
            outputs = {k: _float32(v, k) for k, v in outputs.items()}
            model = MaskRCNNTrainModel(inputs, outputs, config, name="mask_rcnn")
        else:
            # Named outputs (graph.inference_output_names); predict() returns a dict.
            inputs, outputs = graph.build_inference_graph(config)
            outputs = {k: _float32(v, k) for k, v in outputs.items()}
            model = keras.Model(inputs, outputs, name="mask_rcnn")
        for layer in model.layers:  # read at call time, so one place sets it for all
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = config.BN_MOMENTUM
        return model

    # ------------------------------------------------------------------ checkpoints
    def set_log_dir(self, model_path=None):
        """Sets the log directory and epoch; a checkpoint path resumes its run.

        A new run is named <name>YYYYMMDDTHHMMSS (plus _2, _3, ... when taken); its
        directory is created by create_log_dir(), which never reuses an existing one,
        so two runs started in the same second never share checkpoints or logs.
        """
        self.epoch = 0
        m = _CHECKPOINT_RE.match(str(model_path).replace("\\", "/")) if model_path else None
        self._resuming = bool(m)
        self._log_dir_created = False
        if m:  # resume: the checkpoint's run directory and epoch
            self.epoch = int(m.group("epoch"))
            self.log_dir = os.path.dirname(os.path.abspath(model_path))
        else:
            now = datetime.datetime.now()
            self.log_dir = _free_run_dir(self.model_dir,
                                         f"{self.config.NAME.lower()}{now:%Y%m%dT%H%M%S}")
        self._set_checkpoint_path()

    def _set_checkpoint_path(self):
        self.checkpoint_path = os.path.join(
            self.log_dir, f"mask_rcnn_{self.config.NAME.lower()}_{{epoch:04d}}.h5")

    def create_log_dir(self):
        """Creates this run's directory and returns it: a resumed run's own directory
        is reused; a new run gets a directory no other run has (a suffix _2, _3, ...
        is added when its name was taken meanwhile, e.g. by a run in the same second)."""
        if self._resuming or self._log_dir_created:
            os.makedirs(self.log_dir, exist_ok=True)
            return self.log_dir
        parent, name = os.path.split(os.path.abspath(self.log_dir))
        os.makedirs(parent, exist_ok=True)
        base = re.sub(r"_\d+$", "", name)
        for n in itertools.count(1):
            candidate = os.path.join(parent, base if n == 1 else f"{base}_{n}")
            try:
                os.makedirs(candidate, exist_ok=False)
            except FileExistsError:
                continue
            self.log_dir, self._log_dir_created = candidate, True
            self._set_checkpoint_path()
            return candidate

    def find_last(self):
        """Path of the last checkpoint of the newest run of this config's NAME."""
        return find_last(self.model_dir, self.config.NAME)

    def load_weights(self, filepath, by_name=False, exclude=None):
        """Loads our checkpoints, matterport's Keras-2 .h5 files or Keras 3 files.

        by_name=True loads the layers with matching names and reports the skipped
        ones; exclude lists layer names to leave untouched. Returns the report.
        """
        filepath = str(filepath)
        if not os.path.exists(filepath):
            raise FileNotFoundError(f"Weight file {filepath} does not exist; check the path "
                                    "(or use find_last() for the newest checkpoint).")
        if is_keras3_file(filepath):
            if by_name or exclude:
                raise ValueError(f"{filepath} is a Keras 3 .weights.h5 file, which stores "
                                 "no layer names; load it with by_name=False and no exclude.")
            self.keras_model.load_weights(filepath)
            report = {"loaded": [l.name for l in self.keras_model.layers if l.weights],
                      "skipped": [], "unused": []}
        else:
            report = load_weights_by_name(self.keras_model, filepath, exclude=exclude,
                                          strict=not by_name)
        if report["skipped"]:
            log.info("Loaded %d layers from %s; %d layers not in the file keep their "
                     "initial weights: %s", len(report["loaded"]), filepath,
                     len(report["skipped"]), ", ".join(report["skipped"][:20]))
        self.set_log_dir(filepath)
        self.loaded_weights = report
        return report

    def get_imagenet_weights(self):
        """Path of the ImageNet weights of the config's backbone (downloaded if needed)."""
        from mrcnn.weights.download import get_weights
        backbone = self.config.BACKBONE
        name = f"{backbone}-imagenet" if isinstance(backbone, str) else None
        return get_weights(name)

    # ------------------------------------------------------------------ training
    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, no_augmentation_sources=None,
              time_budget=None, verbose=1, keep_last=None, keep_best=None,
              evaluation=None, budget_start=None, patience=None):
        """Trains the layers selected by `layers` up to the cumulative epoch `epochs`.

        train_dataset / val_dataset: prepared utils.Dataset objects, H5RecordSource
        caches or tf.data datasets of records. augmentation: an imgaug augmenter (or
        "flip" for the graph-only horizontal flip). time_budget: minutes (counted from
        budget_start, a time.time() value, default now) within which training, its
        last checkpoint and the final evaluation end: training stops early enough for
        them, and progress shows the budget's time (verbose=1). keep_last: epoch checkpoints to keep
        (None: all); keep_best: an epoch-log key ("segm_AP50", "val_loss") whose best
        epoch is kept as mask_rcnn_<name>_best.h5 with best.json (mrcnn.training.checkpoints).
        evaluation: an EvaluationCallback (mrcnn.training.evaluation_callback) adding
        val AP to the epoch logs, TensorBoard and the training curve. patience: stop
        when keep_best has not improved for this many evaluations (mrcnn.training.checkpoints.
        EarlyStopping); afterwards `stopped_early` is True. SIGTERM (scancel, docker
        stop) ends the epoch after the current step, writes its checkpoint and sets
        `stopped_by_signal`.
        """
        assert self.mode == "training", "Create model in training mode."
        if epochs <= self.epoch:
            log.warning("Already at epoch %d; nothing to train up to epoch %d.",
                        self.epoch, epochs)
            return None
        regex = layers_regex(layers, self.config.BACKBONE)
        trained = set_trainable(self.keras_model, regex, verbose=verbose)
        if not trained:
            raise ValueError(f"layers={layers!r} selects no layer with weights; use "
                             "heads, 3+, 4+, 5+, all or a regex over layer names.")
        bs = self.config.BATCH_SIZE
        train_ds = self._inputs(train_dataset, bs, augmentation, augment=True)
        val_ds = self._inputs(val_dataset, bs) if val_dataset is not None else None
        chief = distribute.is_chief(self.strategy)
        if chief:  # only the chief writes checkpoints and logs
            self.create_log_dir()
        if evaluation is not None and evaluation.build_inference is None:
            evaluation.build_inference = lambda config, model_dir: MaskRCNN(
                "inference", config, model_dir)
        callbacks = training_callbacks(self.log_dir, self.checkpoint_path, bs, chief,
                                       str(layers), keep_last, keep_best, evaluation,
                                       patience)
        budget = self._time_budget(time_budget, budget_start, callbacks, evaluation)
        if budget:
            callbacks.append(budget)
            if verbose == 1:  # the budget's time, not Keras' epoch bar and epoch ETA
                callbacks.append(BudgetProgress(budget))
                verbose = 0
        if self.config.LR_SCHEDULE != "constant":
            planned = (epochs - self.epoch) * self.config.STEPS_PER_EPOCH
            self.lr_schedule = BudgetedLearningRate(learning_rate, self.config, planned, budget)
            callbacks.insert(0, self.lr_schedule)  # before LossCurve logs the rate
        stop_on_signal = StopOnSignal(self.strategy)  # SIGTERM: checkpoint, then stop
        callbacks += [stop_on_signal] + list(custom_callbacks or [])
        if getattr(self.config, "EMA_DECAY", 0):  # the average is saved and evaluated
            average_in = AverageIn()
            callbacks = [average_in] + callbacks + [AverageOut(average_in)]
        log.info("Starting at epoch %d, LR=%s, training %d layers; checkpoints: %s",
                 self.epoch, learning_rate, len(trained), self.checkpoint_path)
        with self._scope():
            self.keras_model.compile(
                optimizer=make_optimizer(self.config, learning_rate),
                jit_compile=bool(getattr(self.config, "JIT_COMPILE", False)),
                steps_per_execution=int(getattr(self.config, "STEPS_PER_EXECUTION", 1)))
            # Built here, not inside the first traced step: variables created while
            # tracing make TensorFlow trace the whole training step a second time.
            self.keras_model.optimizer.build(self.keras_model.trainable_variables)
        history = self._fit(train_ds, val_ds, epochs, callbacks, verbose)
        done = history.epoch[-1] + 1 if history.epoch else self.epoch
        self.epoch = max(self.epoch, done)
        if self.skips.count:
            log.warning("%d training sample(s) were skipped (first: %s).",
                        self.skips.count, self.skips.reasons[:1])
        self.time_budget_exhausted = bool(budget and budget.exhausted)
        self.stopped_by_signal = stop_on_signal.received
        self.stopped_early = any(c.stopped for c in callbacks if isinstance(c, EarlyStopping))
        return history

    @staticmethod
    def _time_budget(minutes, start, callbacks, evaluation):
        """A TimeBudget keeping room for the last checkpoint and evaluation, or None."""
        if not minutes:
            return None
        after = [c.seconds_needed for c in callbacks if isinstance(c, AtomicCheckpoint)]
        if evaluation is not None:
            evaluation.prepare_early = True  # measured before training, not guessed
            after.append(evaluation.seconds_needed)
        return TimeBudget(minutes, start_time=start, after_training=after)

    def _fit(self, train_ds, val_ds, epochs, callbacks, verbose):
        """keras fit; inputs that never yield a usable sample raise NoUsableSamples (one
        sentence, not TensorFlow's wrapped error) and a failed write names this run's
        directory when the error does not name a file."""
        try:
            return self.keras_model.fit(
                train_ds, initial_epoch=self.epoch, epochs=epochs,
                steps_per_epoch=self.config.STEPS_PER_EPOCH, callbacks=callbacks,
                validation_data=val_ds, validation_steps=self.config.VALIDATION_STEPS,
                shuffle=False, verbose=verbose)
        except tf.errors.OpError as e:
            if self.skips.exhausted():
                raise NoUsableSamples(self.skips.summary()) from None
            number = next((n for n in _DISK_ERRNOS if os.strerror(n) in str(e)), None)
            if number is not None:  # e.g. TensorBoard's event writer on a full disk
                raise OSError(number, os.strerror(number), self.log_dir) from None
            raise
        except OSError as e:
            if not getattr(e, "filename", None):
                e.filename = self.log_dir
            raise

    def _inputs(self, data, batch_size, augmentation=None, augment=False):
        """Training/validation batches; TFRecord file patterns are sharded per worker."""
        if distribute.is_tpu(self.strategy):
            distribute.check_tpu_inputs(data, self.config, augmentation)
        pre_sharded = False
        if distribute.is_file_pattern(data):
            data, pre_sharded = distribute.worker_records(data, self.config, self.strategy)
        ds = training_inputs(data, self.config, batch_size, shuffle=True,
                             augmentation=augmentation, skips=self.skips, augment=augment)
        if pre_sharded:
            ds = distribute.set_shard_policy(ds, tf.data.experimental.AutoShardPolicy.OFF)
        return ds

    # ------------------------------------------------------------------ inference
    def mold_inputs(self, images):
        return inference.mold_inputs(images, self.config)

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape,
                          window):
        return inference.unmold_detections(detections, mrcnn_mask, original_image_shape,
                                           image_shape, window)

    def get_anchors(self, image_shape):
        """Normalised anchors [A, 4] for a (molded) image shape."""
        return norm_anchors(self.config, image_shape[:2])

    def _batch_anchors(self, molded):
        """[batch, A, 4] anchors for a batch of molded images of one shape."""
        anchors = self.get_anchors(molded[0].shape)
        return np.broadcast_to(anchors, (len(molded),) + anchors.shape)

    def _predict(self, molded, metas, anchors):
        """The inference graph's named outputs for one batch, as numpy arrays."""
        if self._infer_fn is None:
            model = self.keras_model

            def infer(images, metas, anchors):
                return model([images, metas, anchors], training=False)
            self._infer_fn = tf.function(infer, reduce_retracing=True, autograph=False)
        outs = self._infer_fn(tf.constant(molded, tf.float32), tf.constant(metas, tf.float32),
                              tf.constant(anchors, tf.float32))
        return {name: value.numpy() for name, value in outs.items()}

    def detect(self, images, verbose=0):
        """Runs detection on a list of images of any length (batched internally).

        Returns one dict per image: rois [N, (y1, x1, y2, x2)], class_ids [N], scores [N],
        masks [H, W, N] bool in the image's own coordinates (plus mask_scores and, with
        an attribute head, attribute_probabilities [N, NUM_ATTRIBUTES]).
        """
        assert self.mode == "inference", "Create model in inference mode."
        results = []
        bs = max(1, self.config.BATCH_SIZE)
        for start in range(0, len(images), bs):
            batch = list(images[start:start + bs])
            molded, metas, windows = self.mold_inputs(batch)
            if len({m.shape for m in molded}) > 1:
                raise ValueError("Images of one batch must mold to one size; use "
                                 "IMAGE_RESIZE_MODE='square' or batch size 1.")
            results += self._detect_batch(batch, molded, metas, windows, verbose)
        return results

    def _detect_batch(self, originals, molded, metas, windows, verbose=0):
        anchors = self._batch_anchors(molded)
        outs = self._predict(molded, metas, anchors)
        detections = outs["detections"]         # [B, D, (y1, x1, y2, x2, class_id, score)]
        mrcnn_mask = outs["mrcnn_mask"]         # [B, D, h, w, NUM_CLASSES]
        attrs = outs.get("attributes")          # [B, D, NUM_ATTRIBUTES] or None
        results = []
        for i, image in enumerate(originals):
            shape = image.shape if hasattr(image, "shape") else image
            results.append(inference.unmold_detections(
                detections[i], mrcnn_mask[i], shape, molded[i].shape, windows[i],
                attributes=None if attrs is None else attrs[i]))
            if verbose:
                print(f"image {i}: {len(results[-1]['class_ids'])} detections")
        return results

    def detect_molded(self, molded_images, image_metas, verbose=0):
        """Detection on images already molded (resized, mean-subtracted)."""
        assert self.mode == "inference", "Create model in inference mode."
        windows = utils.parse_image_meta(image_metas)["window"]
        shapes = [tuple(m.shape) for m in molded_images]
        return self._detect_batch(shapes, molded_images, image_metas, windows, verbose)

    # ------------------------------------------------------------------ inspection
    def _graph_tensor(self, key):
        """An output name, a layer name or a KerasTensor -> the KerasTensor."""
        if not isinstance(key, str):
            return key
        named = _named_outputs(self.keras_model)
        return named[key] if key in named else self.keras_model.get_layer(key).output

    def get_trainable_layers(self):
        return [l for l in self.keras_model.layers if l.weights]

    def run_graph(self, images, outputs, image_metas=None):
        """Runs the inference graph and returns named intermediate tensors.

        outputs: list of (name, tensor) pairs where tensor is an output name of the
        inference graph ("detections", "mrcnn_mask", ... see graph.INFERENCE_OUTPUTS), a
        layer name or a KerasTensor, e.g. [("proposals", "ROI"), ("P2", "fpn_p2"),
        ("detections", "detections")]. Returns an ordered dict name -> array.
        """
        from collections import OrderedDict
        tensors = [self._graph_tensor(t) for _, t in outputs]
        sub = keras.Model(self.keras_model.inputs, tensors)
        molded, metas, _ = self.mold_inputs(images)
        metas = metas if image_metas is None else image_metas
        anchors = self._batch_anchors(molded)
        values = sub.predict_on_batch([molded, metas, anchors])
        values = values if isinstance(values, (list, tuple)) else [values]
        return OrderedDict((n, np.asarray(v)) for (n, _), v in zip(outputs, values))

    # ------------------------------------------------------------------ export
    def export(self, path, format="saved_model", class_names=None, attribute_names=None,
               **options):
        """Exports this inference model: "saved_model" (PATH/1/, TF Serving), "onnx"
        (PATH/model.onnx) or "tflite" (PATH/model.tflite), with labels.json; returns the
        model's path. The exports give detect()'s detections (see mrcnn.export)."""
        from mrcnn.export import export
        return export(self, path, format, class_names, attribute_names, **options)


def run_sort_key(run_name):
    """Sort key of a run directory name, oldest first: its time stamp, then its _N
    suffix (a minute-named run counts as second -1 of its minute); names without a
    stamp sort before all stamped ones."""
    m = _RUN_DIR_RE.match(run_name)
    if not m:
        return (0, (), run_name)
    *stamp, second, suffix = m.groups()
    return (1, tuple(int(v) for v in stamp) + (int(second) if second else -1,
                                              int(suffix or 1)), run_name)


def _free_run_dir(model_dir, base):
    """model_dir/base, or base_2, base_3, ... when that directory already exists."""
    for n in itertools.count(1):
        path = os.path.join(model_dir, base if n == 1 else f"{base}_{n}")
        if not os.path.exists(path):
            return path


def find_last(model_dir, name):
    """Path of the last checkpoint of the newest run named `name` under model_dir.

    Runs are directories <name>YYYYMMDDTHHMM[SS][_N] (name lower-cased) holding
    mask_rcnn_*.h5 files; the newest run with a checkpoint wins (by its time stamp and
    suffix, not by string order). Raises FileNotFoundError with the fix when there is
    none.
    """
    key = name.lower()
    runs = sorted((d for d in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
                   if d.startswith(key) and os.path.isdir(os.path.join(model_dir, d))),
                  key=run_sort_key)
    for run in reversed(runs):
        d = os.path.join(model_dir, run)
        ckpts = epoch_checkpoints(d)  # by epoch number; the _best.h5 file has none
        if ckpts:
            return ckpts[-1][1]
    raise FileNotFoundError(
        f"Could not find a checkpoint of {key!r} under {model_dir}: no run "
        f"directory {key}YYYYMMDDTHHMMSS with mask_rcnn_*.h5 files; train first or "
        "pass a weights path.")


def _named_outputs(model):
    """A model's outputs as a dict name -> KerasTensor ({} for list outputs)."""
    return dict(model.output) if isinstance(model.output, dict) else {}


def _float32(tensor, name):
    """Under mixed precision, casts a half-precision model output to float32 (no weights)."""
    if tensor.dtype not in ("float16", "bfloat16"):
        return tensor
    return keras.layers.Activation("linear", dtype="float32", name=f"{name}_float32")(tensor)


class _NullScope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

"""Training machinery: the train-step model, layer-regex freezing, optimizers, stages.

Staged training (matterport's practice) calls ``MaskRCNN.train`` several times with
cumulative epochs, e.g. heads for 40 epochs, then all layers up to 120 at a lower rate.
``parse_schedule("heads:2,all:4")`` turns the CLI's schedule string into such stages.
"""
import re

import keras
import tensorflow as tf

from mrcnn.keras_compat import (KeepValidationIterator, ReplicaSafeBuild,
                                 in_multi_worker_mode)
from mrcnn.losses import compute_losses, weight_decay_loss
from mrcnn.training.optimizers import FusedAdamW
from mrcnn.training.precision import resolve_precision

# Presets of layers to train, as regular expressions over layer names.
LAYER_REGEX = {
    # all layers except the backbone
    "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)|(bifpn\_.*)",
    # from a ResNet stage and up
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)|(bifpn\_.*)",
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)|(bifpn\_.*)",
    "5+": r"(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)|(bifpn\_.*)",
    # all layers
    "all": ".*",
}
# EfficientNet blocks are named block1a.. block7x; "4+" etc. map to its stages too.
EFFICIENTNET_STAGE_REGEX = {
    "3+": r"(block[4-7].*)|(top_.*)",
    "4+": r"(block[5-7].*)|(top_.*)",
    "5+": r"(block[6-7].*)|(top_.*)",
}


def layers_regex(layers, backbone=None):
    """A preset name or a regex -> the regex that selects the layers to train."""
    regex = LAYER_REGEX.get(layers, layers)
    if (isinstance(backbone, str) and backbone.startswith("efficientnet")
            and layers in EFFICIENTNET_STAGE_REGEX):
        regex = f"{EFFICIENTNET_STAGE_REGEX[layers]}|{LAYER_REGEX['heads']}"
    try:
        re.compile(regex)
    except re.error as e:
        raise ValueError(f"layers={layers!r} is neither a preset "
                         f"({', '.join(LAYER_REGEX)}) nor a valid regex: {e}.") from e
    return regex


def set_trainable(model, regex, verbose=0):
    """Marks the layers whose names fully match regex trainable, the others frozen.

    Returns the names of the trainable layers that hold weights.
    """
    pattern = re.compile(regex)
    trained = []
    for layer in model.layers:
        if not layer.weights:
            continue
        on = bool(pattern.fullmatch(layer.name))
        layer.trainable = on
        if on:
            trained.append(layer.name)
            if verbose > 2:
                print(f"{layer.name:32} ({type(layer).__name__})")
    return trained


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from lr/10 to lr over warmup_steps, then constant."""

    def __init__(self, learning_rate, warmup_steps):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        frac = tf.minimum(1.0, (step + 1) / max(self.warmup_steps, 1))
        return self.learning_rate * (0.1 + 0.9 * frac)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


def make_optimizer(config, learning_rate):
    """matterport's SGD with momentum and per-variable clipnorm (or AdamW)."""
    # "cosine"/"linear": mrcnn.training.schedules.BudgetedLearningRate sets the rate every step.
    constant = getattr(config, "LR_SCHEDULE", "constant") == "constant"
    lr = (WarmupSchedule(learning_rate, config.WARMUP_STEPS)
          if config.WARMUP_STEPS and constant else learning_rate)
    clip = config.GRADIENT_CLIP_NORM or None
    ema = float(getattr(config, "EMA_DECAY", 0) or 0)
    average = {"use_ema": True, "ema_momentum": ema} if ema else {}
    if config.OPTIMIZER == "adamw":
        opt = FusedAdamW(learning_rate=lr, weight_decay=config.WEIGHT_DECAY, clipnorm=clip,
                         **average)
    else:
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=config.LEARNING_MOMENTUM,
                                   clipnorm=clip, **average)
    if resolve_precision(config.MIXED_PRECISION) == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def clip_global_gradients(optimizer, pairs, replicas):
    """Clips the summed gradient of all replicas, as one device would (replica context).

    Keras optimizers clip (clipnorm) each replica's gradient before summing them, which
    is not the step one device takes on the global batch. Here the replicas' gradients
    are summed first, clipped per variable (after undoing a loss scale), and handed
    back divided by the replica count: the optimizer's own sum then restores the
    clipped global gradient, and its own clipping is a no-op (norms <= clipnorm / N).
    """
    scaler = optimizer if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else None
    clip = (scaler.inner_optimizer if scaler else optimizer).clipnorm
    ctx = tf.distribute.get_replica_context()
    if not clip or ctx is None or not pairs:
        return pairs
    grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [g for g, _ in pairs])
    scale = tf.cast(scaler.scale_loss(1.0), tf.float32) if scaler else None
    clipped = []
    for g, (_, v) in zip(grads, pairs):
        g32 = tf.cast(g, tf.float32)
        if scale is not None:
            g32 = tf.clip_by_norm(g32 / scale, clip) * scale   # clip the unscaled value
        else:
            g32 = tf.clip_by_norm(g32, clip)
        clipped.append((tf.cast(g32 / replicas, g.dtype), v))
    return clipped


class MaskRCNNTrainModel(KeepValidationIterator, ReplicaSafeBuild, keras.Model):
    """The training graph as a functional keras.Model with its own train/test steps.

    Losses: rpn class/bbox, mrcnn class/bbox/mask (+ attributes), weighted by
    LOSS_WEIGHTS, plus L2 weight decay (not with AdamW, which decays itself). Under a
    tf.distribute strategy Keras sums replica gradients, so the loss is divided by the
    number of replicas: N replicas then take the same step as one device on the same
    global batch.
    """

    def __init__(self, inputs, outputs, config, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.config = config
        # Input dtypes: inputs fed with another dtype (e.g. uint8 masks) are cast.
        self._input_dtypes = ({k: v.dtype for k, v in inputs.items()}
                              if isinstance(inputs, dict) else {})
        names = ["loss"] + [n for n in config.LOSS_WEIGHTS
                            if n != "mrcnn_attr_loss" or config.NUM_ATTRIBUTES]
        if getattr(config, "MASK_HEAD", "matterport") == "pointrend":
            names += [] if "mrcnn_point_loss" in names else ["mrcnn_point_loss"]
        else:
            names = [n for n in names if n != "mrcnn_point_loss"]
        self._trackers = {n: keras.metrics.Mean(name=n) for n in names}

    @property
    def metrics(self):
        return list(self._trackers.values())

    def _standardize(self, data):
        inputs = data[0] if isinstance(data, tuple) else data
        return {k: tf.cast(v, self._input_dtypes[k]) if k in self._input_dtypes
                and v.dtype != self._input_dtypes[k] else v for k, v in inputs.items()}

    def _loss_values(self, inputs, training):
        outputs = self(inputs, training=training)
        losses = compute_losses(inputs, outputs, self.config)
        total = tf.add_n(list(losses.values()))
        if self.config.OPTIMIZER != "adamw":
            total = total + weight_decay_loss(self.trainable_weights, self.config.WEIGHT_DECAY)
        return total, losses

    def _update(self, total, losses):
        self._trackers["loss"].update_state(total)
        for k, v in losses.items():
            self._trackers[k].update_state(v)
        logs = {k: m.result() for k, m in self._trackers.items()}
        if in_multi_worker_mode(tf.distribute.get_strategy()):
            # Keras 3 averages multi-worker logs over axis 0, which scalars lack.
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def train_step(self, data):
        inputs = self._standardize(data)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            total, losses = self._loss_values(inputs, training=True)
            scaled = total / replicas
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                scaled = self.optimizer.scale_loss(scaled)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        if replicas > 1:
            pairs = clip_global_gradients(self.optimizer, pairs, replicas)
        self.optimizer.apply_gradients(pairs)
        return self._update(total, losses)

    def test_step(self, data):
        inputs = self._standardize(data)
        total, losses = self._loss_values(inputs, training=False)
        return self._update(total, losses)


def parse_schedule(text, learning_rate):
    """"heads:2,all:4" -> [(layers, learning_rate, cumulative_epochs), ...].

    The first stage uses learning_rate; later stages whose layers include the backbone
    ("all", "3+", "4+", "5+" or a custom regex) use learning_rate / 10.
    """
    stages = []
    for i, part in enumerate(p for p in text.split(",") if p.strip()):
        if ":" not in part:
            raise ValueError(f"Schedule stage {part!r} needs the form LAYERS:EPOCHS, "
                             "e.g. heads:2,all:4.")
        layers, epochs = part.rsplit(":", 1)
        try:
            epochs = int(epochs)
        except ValueError:
            raise ValueError(f"Schedule stage {part!r}: {epochs!r} is not a whole "
                             "number of epochs.") from None
        if stages and epochs <= stages[-1][2]:
            raise ValueError(f"Schedule stage {part!r}: epochs are cumulative, so "
                             f"{epochs} must exceed the previous stage's {stages[-1][2]}.")
        lr = learning_rate if i == 0 or layers.strip() == "heads" else learning_rate / 10
        stages.append((layers.strip(), lr, epochs))
    if not stages:
        raise ValueError("The schedule is empty; give stages like heads:2,all:4.")
    return stages

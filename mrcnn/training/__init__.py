"""Training: the train-step model, layer freezing and stages (trainer), per-epoch callbacks,
checkpoints, curves, learning-rate schedules, precision, EMA and optimizers.

``from mrcnn.training import make_optimizer, layers_regex, ...`` keeps working: the
trainer's names are handed on here.
"""
from mrcnn.training.trainer import (EFFICIENTNET_STAGE_REGEX, LAYER_REGEX,  # noqa: F401
                                    MaskRCNNTrainModel, WarmupSchedule,
                                    clip_global_gradients, layers_regex, make_optimizer,
                                    parse_schedule, set_trainable)

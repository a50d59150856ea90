"""Mask R-CNN configuration.

One object holds every knob. Attribute names and defaults are matterport's, so a config
subclass written for matterport's Mask_RCNN works here unchanged. Subclass it, override
what differs, and the computed attributes (BATCH_SIZE, IMAGE_SHAPE, IMAGE_META_SIZE)
follow. ``validate()`` (called on construction) rejects impossible values with one
sentence naming the attribute and the fix.

Example:
    class ClothesConfig(Config):
        NAME = "clothes"
        NUM_CLASSES = 1 + 46
        IMAGES_PER_GPU = 2
    config = ClothesConfig()
    config.display()
"""
import numpy as np

from mrcnn.meta import meta_size


class ConfigError(ValueError):
    """An impossible or inconsistent configuration value."""


class Config:
    # Name of the configuration; used in log directory and checkpoint names.
    NAME = None

    # GPUs to use and images per GPU. The global batch is IMAGES_PER_GPU x GPU_COUNT
    # (GPU_COUNT is set from the number of replicas when a tf.distribute strategy runs).
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2

    # Training steps per epoch and validation steps at the end of each epoch.
    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50
    # Training steps run per call into the compiled graph (raise it on TPUs).
    STEPS_PER_EXECUTION = 1

    # Backbone: "resnet50", "resnet101", "efficientnet-b0".."efficientnet-b7", or a
    # callable backbone(input_image, config) -> {"C2".."C5"} (see docs/interfaces.md).
    BACKBONE = "resnet101"
    # Neck: "fpn" or "bifpn"; None picks fpn for ResNet and bifpn for EfficientNet.
    NECK = None
    # BiFPN width and repeats; None takes EfficientDet's table for the backbone.
    BIFPN_CHANNELS = None
    BIFPN_LAYERS = None

    # Only used with a callable BACKBONE: computes the feature map shapes.
    COMPUTE_BACKBONE_SHAPE = None

    # Strides of the pyramid levels P2..P6.
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]

    # Layout of the pyramid and heads. "matterport": matterport's sizes below, which its
    # weight files (mask_rcnn_coco.h5) need. "scaled": the sizes not set in a subclass
    # follow the backbone and image size (one table, mrcnn/layout.py; EfficientDet's
    # D0-D7 widths for EfficientNet), a model sized to the job for training without
    # matterport's weights. None: "matterport" for ResNet50/101, "scaled" for ResNet18 and
    # EfficientNet (no matterport weights exist for them).
    LAYOUT = None

    # Size of the fully-connected layers in the classification graph.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024

    # Channels of the top-down pyramid layers.
    TOP_DOWN_PYRAMID_SIZE = 256
    # Channels of the RPN's shared 3x3 convolution; channels and number of the mask
    # head's 3x3 convolutions.
    RPN_CONV_DEPTH = 512
    MASK_HEAD_DEPTH = 256
    MASK_HEAD_CONVS = 4
    # These are matterport's sizes; with LAYOUT "scaled" the ones not set in a subclass
    # come from mrcnn/layout.py.

    # Number of classes including background.
    NUM_CLASSES = 1

    # Fine-grained attributes per instance (0 = no attribute head). The attribute loss
    # is "sigmoid" (binary cross-entropy) or "focal".
    NUM_ATTRIBUTES = 0
    ATTRIBUTE_LOSS = "sigmoid"
    ATTRIBUTE_FC_SIZE = 512

    # Anchor side lengths in pixels, one per pyramid level, and their ratios.
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]
    # Anchor stride: 1 = an anchor at every feature map cell.
    RPN_ANCHOR_STRIDE = 1
    # NMS threshold for filtering RPN proposals.
    RPN_NMS_THRESHOLD = 0.7
    # Anchors per image used for RPN training.
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256

    # ROIs kept after tf.nn.top_k and before NMS.
    PRE_NMS_LIMIT = 6000

    # ROIs kept after non-maximum suppression (training and inference).
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    # Instance masks resized to a smaller size to save memory.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)  # (height, width) of the mini-mask

    # Input image resizing: "none", "square", "pad64" or "crop".
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    # Minimum scale ratio; 2 forces images to be scaled up 2x at least.
    IMAGE_MIN_SCALE = 0
    # Colour channels per image. RGB = 3.
    IMAGE_CHANNEL_COUNT = 3

    # Image mean (RGB).
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    # ROIs per image fed to the classifier/mask heads during training.
    TRAIN_ROIS_PER_IMAGE = 200
    # Fraction of positive ROIs used to train the classifier/mask heads.
    ROI_POSITIVE_RATIO = 0.33

    # Pooled ROIs.
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14

    # Shape of the output mask; change the mask head too when changing it.
    MASK_SHAPE = [28, 28]

    # Mask head: "matterport" (MASK_SHAPE probabilities per box, matterport's head and
    # weights) or "pointrend": the same head's mask as a coarse prediction, refined by a
    # point head at the most uncertain points up to MASK_OUTPUT_SIZE x MASK_OUTPUT_SIZE
    # (mrcnn/heads/pointrend.py). matterport's layout keeps "matterport"; LAYOUT "scaled"
    # (from scratch, ImageNet backbones, ResNet18, EfficientNet) picks "pointrend" unless
    # set here. With PointRend a MINI_MASK_SHAPE left at its default is raised to its
    # training targets' size (4 x MASK_SHAPE); one set by hand is kept.
    MASK_HEAD = "matterport"
    # Side of PointRend's refined mask: MASK_SHAPE times a power of 2 (e.g. 112, 224).
    MASK_OUTPUT_SIZE = 112
    # Point head: hidden layers and their width (the layout's width with LAYOUT "scaled").
    POINTREND_FC_LAYERS = 3
    POINTREND_FC_SIZE = 256
    # Training points per ROI (N), oversampling (k) and the share of uncertain points (beta).
    POINTREND_TRAIN_POINTS = 196
    POINTREND_OVERSAMPLE = 3
    POINTREND_IMPORTANCE = 0.75
    # Points refined per subdivision step at inference.
    POINTREND_SUBDIVISION_POINTS = 784

    # Maximum ground truth instances per image.
    MAX_GT_INSTANCES = 100

    # Bounding box refinement standard deviation for RPN and final detections.
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    # Maximum number of final detections.
    DETECTION_MAX_INSTANCES = 100
    # Minimum probability to accept a detected instance.
    DETECTION_MIN_CONFIDENCE = 0.7
    # Non-maximum suppression threshold for detection.
    DETECTION_NMS_THRESHOLD = 0.3

    # Learning rate and momentum (SGD).
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9
    # Optimizer: "sgd" (matterport) or "adamw".
    OPTIMIZER = "sgd"
    # Linear warm-up steps at the start of each training stage (0 = none).
    WARMUP_STEPS = 0
    # Learning rate after warm-up: "cosine" or "linear" decay to LR_FLOOR x the rate on
    # the stage's last step (the time budget's last step with train(time_budget=...)),
    # or "constant" (see mrcnn/training/schedules.py).
    LR_SCHEDULE = "cosine"
    LR_FLOOR = 0.01

    # Weight decay regularisation (L2 on conv and dense kernels).
    WEIGHT_DECAY = 0.0001

    # Loss weights for finer control.
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.,
        "rpn_bbox_loss": 1.,
        "mrcnn_class_loss": 1.,
        "mrcnn_bbox_loss": 1.,
        "mrcnn_mask_loss": 1.,
        "mrcnn_attr_loss": 1.,
    }

    # In-graph augmentation of training images (mrcnn/data/augment.py): horizontal flips,
    # a random scale in AUGMENT_SCALE = (lo, hi) cropped or padded back to the input size
    # (multi-scale training), and pasting another image's instances over an image with
    # probability AUGMENT_COPY_PASTE (copy-paste). Off, as in matterport; the fashion
    # application's from-scratch defaults turn on what measured a gain.
    AUGMENT_FLIP = False
    AUGMENT_SCALE = None
    AUGMENT_COPY_PASTE = 0.0

    # Exponential moving average of the trained weights (0 = off): after each step
    # average = EMA_DECAY x average + (1 - EMA_DECAY) x weight; checkpoints, evaluation
    # and the final model are the average (mrcnn/training/ema.py).
    EMA_DECAY = 0.0

    # Use RPN ROIs or externally generated ROIs for training.
    USE_RPN_ROIS = True
    # Append the ground-truth boxes to the RPN proposals when sampling ROIs for the
    # heads (torchvision/detectron2 practice). matterport does not; it matters most when
    # training from scratch, where early proposals rarely overlap an object.
    ADD_GT_TO_PROPOSALS = False

    # Train or freeze batch normalization layers: None trains them, False freezes them
    # (inference mode, matterport's default for small batches), True forces training mode.
    TRAIN_BN = False
    # Momentum of the batch-norm moving statistics; from-scratch training on few steps
    # wants a lower value (e.g. 0.9) so inference statistics catch up quickly.
    BN_MOMENTUM = 0.99

    # Drop-connect rate of EfficientNet blocks.
    EFFICIENTNET_DROP_CONNECT_RATE = 0.2

    # Gradient norm clipping.
    GRADIENT_CLIP_NORM = 5.0

    # Static shapes everywhere (XLA / TPU): the mask head then runs on the maximum number
    # of positive ROIs and ROI align crops every level. False saves work on CPUs/GPUs.
    STATIC_SHAPES = False
    # XLA-compile the train step (jit_compile); needs STATIC_SHAPES (XLA has no kernel for
    # the dynamic ROI align). Off by default: on a CPU the compiled bf16 step took 3.2x
    # the default step's time (docs/benchmarks.md); try it on GPUs/TPUs.
    JIT_COMPILE = False

    # Precision policy: "auto" (bfloat16 on CPUs with avx512_bf16/AMX and GPUs of compute
    # capability >= 8.0, float16 on 7.x GPUs, float32 elsewhere; see mrcnn/training/precision.py),
    # None or "float32", "mixed_float16" or "mixed_bfloat16".
    MIXED_PRECISION = "auto"

    _RESIZE_MODES = ("none", "square", "pad64", "crop")

    def __init__(self):
        """Sets the computed attributes and validates the configuration."""
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        if self.IMAGE_RESIZE_MODE == "crop":
            self.IMAGE_SHAPE = np.array([self.IMAGE_MIN_DIM, self.IMAGE_MIN_DIM,
                                         self.IMAGE_CHANNEL_COUNT])
        else:
            self.IMAGE_SHAPE = np.array([self.IMAGE_MAX_DIM, self.IMAGE_MAX_DIM,
                                         self.IMAGE_CHANNEL_COUNT])
        # the layout is defined once, in mrcnn/meta.py
        self.IMAGE_META_SIZE = meta_size(self.NUM_CLASSES)
        from mrcnn.layout import apply_scaled_defaults, fit_mini_masks
        apply_scaled_defaults(self, Config)
        fit_mini_masks(self, Config)
        self.validate()

    # ------------------------------------------------------------------ validation
    def _fail(self, msg):
        raise ConfigError(f"{type(self).__name__}: {msg}")

    def validate(self):
        """Raises ConfigError naming the first impossible value and how to fix it."""
        def positive_int(name):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                self._fail(f"{name} must be a positive integer, got {v!r}.")
        for name in ("GPU_COUNT", "IMAGES_PER_GPU", "STEPS_PER_EPOCH", "NUM_CLASSES",
                     "TRAIN_ROIS_PER_IMAGE", "MAX_GT_INSTANCES", "DETECTION_MAX_INSTANCES",
                     "POST_NMS_ROIS_TRAINING", "POST_NMS_ROIS_INFERENCE", "PRE_NMS_LIMIT",
                     "RPN_TRAIN_ANCHORS_PER_IMAGE", "POOL_SIZE", "MASK_POOL_SIZE",
                     "TOP_DOWN_PYRAMID_SIZE", "RPN_ANCHOR_STRIDE", "STEPS_PER_EXECUTION",
                     "RPN_CONV_DEPTH", "MASK_HEAD_DEPTH", "FPN_CLASSIF_FC_LAYERS_SIZE",
                     "MASK_HEAD_CONVS", "ATTRIBUTE_FC_SIZE"):
            positive_int(name)
        if self.NUM_CLASSES < 2:
            self._fail(f"NUM_CLASSES is {self.NUM_CLASSES}; it counts the background "
                       "too, so set it to 1 + the number of object classes (at least 2).")
        if not isinstance(self.NUM_ATTRIBUTES, (int, np.integer)) or self.NUM_ATTRIBUTES < 0:
            self._fail(f"NUM_ATTRIBUTES must be an integer >= 0, got {self.NUM_ATTRIBUTES!r}.")
        if self.LAYOUT not in (None, "matterport", "scaled"):
            self._fail(f"LAYOUT is {self.LAYOUT!r}; use 'matterport' (matterport's sizes, "
                       "needed by its weight files), 'scaled' (sized to the backbone and "
                       "image) or None (matterport's for ResNet50/101).")
        if self.ATTRIBUTE_LOSS not in ("sigmoid", "focal"):
            self._fail(f"ATTRIBUTE_LOSS is {self.ATTRIBUTE_LOSS!r}; use 'sigmoid' or 'focal'.")
        if self.IMAGE_RESIZE_MODE not in self._RESIZE_MODES:
            self._fail(f"IMAGE_RESIZE_MODE is {self.IMAGE_RESIZE_MODE!r}; use one of "
                       f"{', '.join(self._RESIZE_MODES)}.")
        side = int(self.IMAGE_SHAPE[0])
        if self.IMAGE_RESIZE_MODE != "none" and side % 64:
            self._fail(f"the image side {side} (IMAGE_MAX_DIM, or IMAGE_MIN_DIM in crop "
                       "mode) must be divisible by 64 so the pyramid levels line up; "
                       f"use {max(64, round(side / 64) * 64)}.")
        if self.IMAGE_RESIZE_MODE == "square" and self.IMAGE_MIN_DIM > self.IMAGE_MAX_DIM:
            self._fail(f"IMAGE_MIN_DIM ({self.IMAGE_MIN_DIM}) exceeds IMAGE_MAX_DIM "
                       f"({self.IMAGE_MAX_DIM}); make it smaller or equal.")
        if len(self.RPN_ANCHOR_SCALES) != len(self.BACKBONE_STRIDES):
            self._fail(f"RPN_ANCHOR_SCALES has {len(self.RPN_ANCHOR_SCALES)} values but "
                       f"BACKBONE_STRIDES has {len(self.BACKBONE_STRIDES)}; give one anchor "
                       "scale per pyramid level (P2..P6).")
        if not 0 < self.ROI_POSITIVE_RATIO <= 1:
            self._fail(f"ROI_POSITIVE_RATIO must be in (0, 1], got {self.ROI_POSITIVE_RATIO}.")
        for name in ("RPN_NMS_THRESHOLD", "DETECTION_NMS_THRESHOLD", "DETECTION_MIN_CONFIDENCE"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                self._fail(f"{name} must be between 0 and 1, got {v}.")
        if self.PRE_NMS_LIMIT < self.POST_NMS_ROIS_INFERENCE:
            self._fail(f"PRE_NMS_LIMIT ({self.PRE_NMS_LIMIT}) is below "
                       f"POST_NMS_ROIS_INFERENCE ({self.POST_NMS_ROIS_INFERENCE}); raise it.")
        scale = self.AUGMENT_SCALE
        if scale is not None and not (len(scale) == 2 and 0 < scale[0] <= scale[1]):
            self._fail(f"AUGMENT_SCALE must be None or (low, high) with 0 < low <= high, "
                       f"got {scale!r}; e.g. (0.75, 1.25).")
        if not 0 <= self.AUGMENT_COPY_PASTE <= 1:
            self._fail(f"AUGMENT_COPY_PASTE is a probability in [0, 1], got "
                       f"{self.AUGMENT_COPY_PASTE}.")
        if not 0 <= self.EMA_DECAY < 1:
            self._fail(f"EMA_DECAY must be in [0, 1) (0 = off), got {self.EMA_DECAY}; "
                       "e.g. 0.999.")
        if self.LEARNING_RATE <= 0:
            self._fail(f"LEARNING_RATE must be > 0, got {self.LEARNING_RATE}.")
        if self.LR_SCHEDULE not in ("cosine", "linear", "constant"):
            self._fail(f"LR_SCHEDULE is {self.LR_SCHEDULE!r}; use 'cosine', 'linear' or "
                       "'constant'.")
        if not 0 <= self.LR_FLOOR <= 1:
            self._fail(f"LR_FLOOR must be a fraction of the rate in [0, 1], got {self.LR_FLOOR}.")
        if self.JIT_COMPILE and not self.STATIC_SHAPES:
            self._fail("JIT_COMPILE needs STATIC_SHAPES = True: XLA cannot compile the "
                       "dynamic-shape ROI align; set both, or JIT_COMPILE = False.")
        if self.OPTIMIZER not in ("sgd", "adamw"):
            self._fail(f"OPTIMIZER is {self.OPTIMIZER!r}; use 'sgd' or 'adamw'.")
        if self.TRAIN_BN not in (None, True, False):
            self._fail(f"TRAIN_BN must be None, True or False, got {self.TRAIN_BN!r}.")
        if self.MIXED_PRECISION not in (None, "auto", "float32", "mixed_float16",
                                        "mixed_bfloat16"):
            self._fail(f"MIXED_PRECISION is {self.MIXED_PRECISION!r}; use 'auto', None, "
                       "'float32', 'mixed_float16' or 'mixed_bfloat16'.")
        if len(self.MASK_SHAPE) != 2 or self.MASK_SHAPE[0] != 2 * self.MASK_POOL_SIZE:
            self._fail(f"MASK_SHAPE {list(self.MASK_SHAPE)} must be twice MASK_POOL_SIZE "
                       f"({self.MASK_POOL_SIZE}) since the mask head upsamples once; set "
                       f"MASK_SHAPE = [{2 * self.MASK_POOL_SIZE}, {2 * self.MASK_POOL_SIZE}].")
        self._validate_mask_head()
        if self.TRAIN_ROIS_PER_IMAGE > self.POST_NMS_ROIS_TRAINING:
            self._fail(f"TRAIN_ROIS_PER_IMAGE ({self.TRAIN_ROIS_PER_IMAGE}) exceeds "
                       f"POST_NMS_ROIS_TRAINING ({self.POST_NMS_ROIS_TRAINING}); lower it.")
        missing = {"rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
                   "mrcnn_bbox_loss", "mrcnn_mask_loss"} - set(self.LOSS_WEIGHTS)
        if missing:
            self._fail(f"LOSS_WEIGHTS lacks {sorted(missing)}; give a weight for each loss.")
        if not callable(self.BACKBONE) and not isinstance(self.BACKBONE, str):
            self._fail(f"BACKBONE must be a name or a callable, got {self.BACKBONE!r}.")
        if isinstance(self.BACKBONE, str):
            from mrcnn.backbones import BACKBONES  # late import: avoids a cycle
            if self.BACKBONE not in BACKBONES:
                self._fail(f"BACKBONE {self.BACKBONE!r} is unknown; valid names are "
                           f"{', '.join(sorted(BACKBONES))}.")
        if self.NECK is not None:
            from mrcnn.necks import NECKS
            if self.NECK not in NECKS:
                self._fail(f"NECK {self.NECK!r} is unknown; valid names are "
                           f"{', '.join(sorted(NECKS))} (or None for the backbone's default).")

    def _validate_mask_head(self):
        if self.MASK_HEAD not in ("matterport", "pointrend"):
            self._fail(f"MASK_HEAD is {self.MASK_HEAD!r}; use 'matterport' (the 28x28 head "
                       "of matterport's weights) or 'pointrend' (refined masks).")
        if self.MASK_HEAD != "pointrend":
            return
        side, out = int(self.MASK_SHAPE[0]), self.MASK_OUTPUT_SIZE
        ratio = out / side if isinstance(out, (int, np.integer)) and out > 0 else 0
        if ratio < 1 or ratio != 2 ** round(np.log2(ratio)):
            self._fail(f"MASK_OUTPUT_SIZE is {out!r}; PointRend doubles the coarse "
                       f"{side}x{side} mask per step, so use {side} times a power of 2 "
                       f"(e.g. {4 * side}).")
        if out > 1024:      # mrcnn.ops.points.most_uncertain ranks up to 2^20 cells
            self._fail(f"MASK_OUTPUT_SIZE is {out}; PointRend refines masks of at most "
                       "1024x1024, so use 1024 or less (e.g. 224).")
        for name in ("POINTREND_FC_LAYERS", "POINTREND_FC_SIZE", "POINTREND_TRAIN_POINTS",
                     "POINTREND_SUBDIVISION_POINTS"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                self._fail(f"{name} must be a positive integer, got {v!r}.")
        if not self.POINTREND_OVERSAMPLE >= 1:
            self._fail(f"POINTREND_OVERSAMPLE must be >= 1 (random points drawn per kept "
                       f"point), got {self.POINTREND_OVERSAMPLE}; PointRend uses 3.")
        if not 0 <= self.POINTREND_IMPORTANCE <= 1:
            self._fail(f"POINTREND_IMPORTANCE is the share of uncertain training points, "
                       f"in [0, 1]; got {self.POINTREND_IMPORTANCE}; PointRend uses 0.75.")

    def mask_target_shape(self):
        """(h, w) of the training mask targets: MASK_SHAPE, or for PointRend a finer crop
        (up to 4x MASK_SHAPE, at most MASK_OUTPUT_SIZE) that the point loss samples."""
        if self.MASK_HEAD != "pointrend":
            return tuple(int(v) for v in self.MASK_SHAPE)
        side = int(self.MASK_SHAPE[0]) * min(4, self.MASK_OUTPUT_SIZE // int(self.MASK_SHAPE[0]))
        return (side, side)

    def mask_output_shape(self):
        """(h, w, channels) of the inference graph's mrcnn_mask per detection: matterport's
        MASK_SHAPE x NUM_CLASSES, or PointRend's refined mask of the detected class."""
        if self.MASK_HEAD == "pointrend":
            return (int(self.MASK_OUTPUT_SIZE), int(self.MASK_OUTPUT_SIZE), 1)
        return (int(self.MASK_SHAPE[0]), int(self.MASK_SHAPE[1]), int(self.NUM_CLASSES))

    # ------------------------------------------------------------------ display
    def to_dict(self):
        """All upper-case attributes (including computed ones) as a dict."""
        return {a: getattr(self, a) for a in sorted(dir(self))
                if a.isupper() and not a.startswith("_") and not callable(getattr(self, a))
                or a == "BACKBONE"}

    def display(self):
        """Prints the configuration values."""
        print("\nConfigurations:")
        for key, val in self.to_dict().items():
            print(f"{key:30} {val}")
        print("\n")

    def neck_name(self):
        """The neck in use: NECK, or the backbone's default."""
        if self.NECK is not None:
            return self.NECK
        if isinstance(self.BACKBONE, str) and self.BACKBONE.startswith("efficientnet"):
            return "bifpn"
        return "fpn"

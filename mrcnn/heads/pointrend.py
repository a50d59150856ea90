"""PointRend mask head (Kirillov et al., "PointRend: Image Segmentation as Rendering", 2020).

The coarse mask is the usual mask head's (``mrcnn.heads.mask.mask_head``: ROI align
14x14 -> convolutions -> MASK_SHAPE probabilities per class). A point head refines it:
at a point of a box it takes the finest pyramid level (P2, stride 4) sampled bilinearly
at the point's image position, and the coarse probabilities of every class at the same
point, through POINTREND_FC_LAYERS fully connected layers of POINTREND_FC_SIZE (the
coarse probabilities are concatenated again before each layer) to one logit per class.

Training (``mode="training"``): per positive ROI, POINTREND_OVERSAMPLE x
POINTREND_TRAIN_POINTS random points are drawn; the POINTREND_IMPORTANCE share of
POINTREND_TRAIN_POINTS nearest the coarse mask's 0.5 (of the ROI's class) are kept, the
rest are drawn uniformly. The head returns the class's logits at those points and the
points; the point loss (``mrcnn.losses.mrcnn_point_loss``) compares them with the
ground-truth mask sampled at the same points.

Inference (``mode="inference"``): adaptive subdivision. The detected class's coarse
logits are up-sampled 2x (bilinear); the POINTREND_SUBDIVISION_POINTS most uncertain
cells (logit nearest 0) get the point head's prediction; repeated until the mask is
MASK_OUTPUT_SIZE on a side. The step count is static, so the loop is unrolled: the graph
has no control flow and exports to SavedModel, ONNX and OpenVINO. The output is the
detected class's probability only: [B, R, MASK_OUTPUT_SIZE, MASK_OUTPUT_SIZE, 1].

Example:
    head = PointRendHead(num_classes=5, fc_size=64, mode="inference",
                         output_size=112, name="mrcnn_point_head")
    fine = head([coarse, detections, rois, pyramid["P2"]])   # [B, R, 112, 112, 1]
"""
import math

import keras
import tensorflow as tf
from keras import layers

from mrcnn.ops import points as point_ops


@keras.saving.register_keras_serializable("mrcnn")
class PointRendHead(layers.Layer):
    """The point head and its two uses (see the module docstring).

    Args:
        num_classes: classes including the background (the coarse mask's channels).
        fc_size, fc_layers: width and count of the point MLP's hidden layers.
        mode: "training" or "inference".
        train_points, oversample, importance: PointRend's N, k and beta (training).
        subdivision_points: points refined per subdivision step (inference).
        output_size: side of the refined mask (inference); a power-of-2 multiple of
            the coarse mask's side.
    """

    def __init__(self, num_classes, fc_size=256, fc_layers=3, mode="training",
                 train_points=196, oversample=3, importance=0.75, subdivision_points=784,
                 output_size=112, **kwargs):
        super().__init__(autocast=False, dtype="float32", **kwargs)
        if mode not in ("training", "inference"):
            raise ValueError(f"PointRendHead mode is {mode!r}; use 'training' or 'inference'.")
        self.num_classes = int(num_classes)
        self.fc_size, self.fc_layers = int(fc_size), int(fc_layers)
        self.mode = mode
        self.train_points, self.oversample = int(train_points), float(oversample)
        self.importance = float(importance)
        self.subdivision_points, self.output_size = int(subdivision_points), int(output_size)

    def build(self, input_shape):
        fine = int(input_shape[3][-1])                 # P2 channels
        c = self.num_classes
        self._fc = []
        width = fine
        for i in range(1, self.fc_layers + 1):
            kernel = self.add_weight(name=f"fc{i}_kernel", shape=(width + c, self.fc_size),
                                     initializer="he_normal")
            bias = self.add_weight(name=f"fc{i}_bias", shape=(self.fc_size,),
                                   initializer="zeros")
            self._fc.append((kernel, bias))
            width = self.fc_size
        self._out = (self.add_weight(name="logits_kernel", shape=(width + c, c),
                                     initializer=keras.initializers.RandomNormal(stddev=0.001)),
                     self.add_weight(name="logits_bias", shape=(c,), initializer="zeros"))
        self.built = True

    # ------------------------------------------------------------------ the MLP
    def point_logits(self, fine, coarse):
        """fine [N, P, F], coarse [N, P, C] -> logits [N, P, C]."""
        x = fine
        for kernel, bias in self._fc:
            x = tf.nn.relu(tf.matmul(tf.concat([x, coarse], -1), kernel) + bias)
        kernel, bias = self._out
        return tf.matmul(tf.concat([x, coarse], -1), kernel) + bias

    def _features(self, points, rois, rows, coarse_flat, p2):
        """Point features at points [N, P, 2] (box-relative) of rois [N, 4] of images
        rows [N]: P2 at the image position [N, P, F] and the coarse probabilities [N, P, C]."""
        fine = point_ops.bilinear_sample(p2, point_ops.roi_to_image_points(rois, points),
                                         rows, corners=True)
        return tf.cast(fine, tf.float32), point_ops.bilinear_sample(coarse_flat, points)

    def call(self, inputs):
        coarse, ids_or_dets, rois, p2 = inputs
        coarse = tf.cast(coarse, tf.float32)            # [B, R, h, w, C] probabilities
        rois = tf.cast(rois, tf.float32)                # [B, R, 4] normalised
        b, r = tf.shape(coarse)[0], tf.shape(coarse)[1]
        if self.mode == "training":
            class_ids = tf.cast(ids_or_dets, tf.int32)                      # [B, R]
            flat, class_ids, rois_flat, rows = self._rows(coarse, class_ids, rois)
            logits, pts = self._train(flat, class_ids, rois_flat, rows, p2)
            return (tf.reshape(logits, tf.stack([b, r, self.train_points])),
                    tf.reshape(pts, tf.stack([b, r, self.train_points, 2])))
        # The detection layer puts an image's detections first and pads with zero rows:
        # only the rows up to the last detection of any image are refined (at least one,
        # so that no tensor is empty), and the rest of the output is zeros. With a few
        # garments among DETECTION_MAX_INSTANCES rows this is most of the head's work.
        class_ids = tf.cast(ids_or_dets[:, :r, 4], tf.int32)                # [B, R]
        position = tf.range(1, r + 1)[None, :] * tf.cast(class_ids > 0, tf.int32)
        keep = tf.maximum(tf.reduce_max(position), 1)
        flat, class_ids, rois_flat, rows = self._rows(
            coarse[:, :keep], class_ids[:, :keep], rois[:, :keep])
        fine = self._subdivide(flat, class_ids, rois_flat, rows, p2)       # [N, S, S]
        s = self.output_size
        fine = tf.reshape(tf.sigmoid(fine), tf.stack([b, keep, s, s, 1]))
        return tf.pad(fine, tf.stack([[0, 0], [0, r - keep], [0, 0], [0, 0], [0, 0]]))

    def _rows(self, coarse, class_ids, rois):
        """[B, R', ...] inputs -> one row per box: coarse [N, h, h, C], class ids [N],
        rois [N, 4] and each row's image index [N] (N = B * R')."""
        h = coarse.shape[2]
        flat = tf.reshape(coarse, tf.stack([-1, h, h, self.num_classes]))
        rows = tf.repeat(tf.range(tf.shape(coarse)[0]), tf.shape(coarse)[1])
        return flat, tf.reshape(class_ids, [-1]), tf.reshape(rois, [-1, 4]), rows

    def _train(self, coarse, class_ids, rois, rows, p2):
        """Training points [N, P, 2] and the class's logits there [N, P]."""
        n = tf.shape(coarse)[0]
        # [N, h, w, 1]: the ROI's class channel of the coarse mask
        own = tf.gather(tf.transpose(coarse, [0, 3, 1, 2]), class_ids, batch_dims=1)[..., None]

        def uniform(count):
            return tf.random.uniform(tf.stack([n, count, 2]), dtype=tf.float32)

        def uncertainty(pts):                   # nearest 0.5 = most uncertain
            return -tf.abs(point_ops.bilinear_sample(own, pts)[..., 0] - 0.5)
        pts = point_ops.training_points(uniform, uncertainty, self.train_points,
                                        self.oversample, self.importance)  # [N, P, 2]
        fine, coarse_at = self._features(pts, rois, rows, coarse, p2)
        logits = self.point_logits(fine, coarse_at)                        # [N, P, C]
        return tf.gather(logits, class_ids, axis=2, batch_dims=1), pts     # [N, P]

    def _subdivide(self, coarse, class_ids, rois, rows, p2):
        """Adaptive subdivision to output_size: [N, S, S] logits of the class."""
        own = tf.gather(tf.transpose(coarse, [0, 3, 1, 2]), class_ids, batch_dims=1)
        own = tf.clip_by_value(own, 1e-6, 1 - 1e-6)
        logits = tf.math.log(own) - tf.math.log(1.0 - own)                 # [N, h, h]
        side = int(coarse.shape[1])
        n = tf.shape(coarse)[0]
        for _ in range(subdivision_steps(side, self.output_size)):
            logits = point_ops.upsample2x(logits)                         # [N, 2s, 2s]
            side *= 2
            k = min(self.subdivision_points, side * side)
            flat = tf.reshape(logits, [-1, side * side])                  # static cells
            idx = point_ops.most_uncertain(flat, k)                       # [N, k]
            pts = point_ops.grid_points(idx, side)                        # [N, k, 2]
            fine, coarse_at = self._features(pts, rois, rows, coarse, p2)
            new = tf.gather(self.point_logits(fine, coarse_at), class_ids,
                            axis=2, batch_dims=1)                          # [N, k]
            where = tf.stack([tf.broadcast_to(tf.range(n)[:, None], tf.shape(idx)), idx], -1)
            flat = tf.tensor_scatter_nd_update(flat, where, new)
            logits = tf.reshape(flat, tf.stack([n, side, side]))
        return logits

    def compute_output_shape(self, input_shape):
        b, r = input_shape[0][0], input_shape[0][1]
        if self.mode == "training":
            return (b, r, self.train_points), (b, r, self.train_points, 2)
        return (b, r, self.output_size, self.output_size, 1)

    def compute_output_spec(self, inputs):
        shapes = self.compute_output_shape([x.shape for x in inputs])
        if self.mode == "training":
            return tuple(keras.KerasTensor(s, "float32") for s in shapes)
        return keras.KerasTensor(shapes, "float32")

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "fc_size": self.fc_size, "fc_layers": self.fc_layers, "mode": self.mode,
                "train_points": self.train_points, "oversample": self.oversample,
                "importance": self.importance,
                "subdivision_points": self.subdivision_points,
                "output_size": self.output_size}


def subdivision_steps(coarse_side, output_size):
    """Number of 2x steps from the coarse side to output_size (a power-of-2 multiple)."""
    return int(round(math.log2(output_size / coarse_side)))


def point_head_from_config(config, mode):
    """The config's PointRendHead for the training or inference graph."""
    return PointRendHead(config.NUM_CLASSES, fc_size=config.POINTREND_FC_SIZE,
                         fc_layers=config.POINTREND_FC_LAYERS, mode=mode,
                         train_points=config.POINTREND_TRAIN_POINTS,
                         oversample=config.POINTREND_OVERSAMPLE,
                         importance=config.POINTREND_IMPORTANCE,
                         subdivision_points=config.POINTREND_SUBDIVISION_POINTS,
                         output_size=config.MASK_OUTPUT_SIZE, name="mrcnn_point_head")

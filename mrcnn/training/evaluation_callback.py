"""Evaluation while training: COCO AP of the val images after every N epochs.

``EvaluationCallback`` keeps one inference-mode model next to the training model. At an
evaluation it copies the training weights into it layer by layer (same names; no file
I/O), detects on a fixed, evenly spaced subset of the val images, scores segm and bbox
AP / AP50 and boundary AP / AP50 / AP75 with mrcnn.evaluation.coco (plus any
application metrics) and puts the
numbers into the epoch logs, so the callbacks after it (checkpoint retention, the epoch
CSV, the training curve) see them. TensorBoard gets the numbers as scalars and a few val
images with their predicted masks under <log_dir>/evaluation. The run report's
evaluation pictures (confusion matrices, mask P/R/F1, val_pred_<epoch>.png, attribute
table; mrcnn.report.evaluation) go to <log_dir> itself.

Example:
    evaluation = EvaluationCallback(dataset_val, config, every=1, limit=200,
                                    log_dir=model.log_dir)
    model.train(dataset_train, dataset_val, 0.001, 20, "heads", evaluation=evaluation,
                keep_best="segm_AP50")
"""
import copy
import logging
import math
import os
import time

import keras
import numpy as np

from mrcnn.evaluation.coco import evaluate_coco
from mrcnn.evaluation.groundtruth import dataset_ground_truth
from mrcnn.evaluation.predictions import detection_to_records
from mrcnn.report.evaluation import SAMPLE_IMAGES, report_seconds, write_evaluation_report
from mrcnn.report.evaluation import describe as describe_report

log = logging.getLogger("mrcnn")

COCO_KEYS = ("segm_AP", "segm_AP50", "boundary_AP", "boundary_AP50", "boundary_AP75",
             "bbox_AP", "bbox_AP50")


def evenly_spaced(image_ids, limit):
    """At most `limit` ids spread evenly over image_ids (all of them when limit is None
    or not smaller); the same subset every time."""
    ids = list(image_ids)
    if not limit or len(ids) <= limit:
        return ids
    picks = np.unique(np.linspace(0, len(ids) - 1, int(limit)).round().astype(int))
    return [ids[i] for i in picks]


def inference_config(config, min_confidence=None):
    """A copy of a training config for inference on one device: batches of
    IMAGES_PER_GPU images when every image molds to one size ("square"), else 1."""
    cfg = copy.copy(config)
    per_batch = int(config.IMAGES_PER_GPU) if config.IMAGE_RESIZE_MODE == "square" else 1
    cfg.IMAGES_PER_GPU, cfg.GPU_COUNT, cfg.BATCH_SIZE = per_batch, 1, per_batch
    if min_confidence is not None:
        cfg.DETECTION_MIN_CONFIDENCE = min_confidence
    return cfg


def weight_pairs(source, target):
    """[(source layer, target layer)] of the target's layers with weights whose
    namesake in source has weights of the same shapes."""
    by_name = {l.name: l for l in source.layers if l.weights}
    pairs, missing = [], []
    for layer in target.layers:
        if not layer.weights:
            continue
        src = by_name.get(layer.name)
        if src is not None and [tuple(w.shape) for w in src.weights] == \
                [tuple(w.shape) for w in layer.weights]:
            pairs.append((src, layer))
        else:
            missing.append(layer.name)
    if missing:
        log.warning("Evaluation model: %d layer(s) have no namesake in the training "
                    "model and keep their initial weights: %s", len(missing),
                    ", ".join(missing[:10]))
    return pairs


class EvaluationCallback(keras.callbacks.Callback):
    """COCO AP on val images after every `every` epochs (and the first and last
    epoch of each fit), or only after the last (`every="last"`), written to the epoch
    logs and TensorBoard.

    Args:
        val_dataset: a prepared utils.Dataset (load_image / load_mask).
        config: the training config; the evaluation model takes a one-device copy.
        every: evaluate after every `every`-th epoch (>= 1), or "last": only after
            the fit's last epoch (the final one, or the one a time budget stops), so
            a budgeted run spends its time training.
        limit: at most this many val images, evenly spaced (None: all).
        log_dir: TensorBoard events go to <log_dir>/evaluation (None: none written).
        ground_truth: fn(dataset, image_ids) -> COCO dict (default: class ids as
            category ids, mrcnn.evaluation.groundtruth).
        to_records: fn(result, image_id, filename, first_id) -> prediction records
            (default: detection_to_records with class ids as category ids).
        metrics_fn: fn(gt, predictions) -> {key: value} of further numbers to log.
        panel_images: how many val images TensorBoard shows with predicted masks.
        min_confidence: DETECTION_MIN_CONFIDENCE of the evaluation model (0.05, as
            for COCO AP).
        report_images: val images drawn with labels and predictions in the run
            report (0: no report pictures).
    """

    def __init__(self, val_dataset, config, every=1, limit=200, log_dir=None,
                 ground_truth=None, to_records=None, metrics_fn=None, panel_images=3,
                 min_confidence=0.05, is_chief=True, report_images=SAMPLE_IMAGES):
        super().__init__()
        if every != "last" and (isinstance(every, str) or int(every) < 1):
            raise ValueError(f"every is {every!r}; evaluate after every N >= 1 epochs, "
                             "or pass \"last\".")
        self.dataset = val_dataset
        self.config = inference_config(config, min_confidence)
        self.every, self.limit = (every if every == "last" else int(every)), limit
        self.log_dir = log_dir
        self.ground_truth = ground_truth or dataset_ground_truth
        self.to_records = to_records or _class_id_records
        self.metrics_fn = metrics_fn
        self.panel_images = int(panel_images)
        self.report_images = int(report_images)
        self.report = None      # the last evaluation's report summary
        self.is_chief = is_chief
        self.image_ids = evenly_spaced(val_dataset.image_ids, limit)
        self.inference = None   # MaskRCNN in inference mode, built at the first evaluation
        # fn(config, model_dir) -> inference MaskRCNN; MaskRCNN.train sets it (the
        # library's model sits above its training wing, so it is handed down, not imported)
        self.build_inference = None
        self._pairs = self._gt = self._writer = None
        self._bands = {}        # the val ground truth's boundary bands, made once
        self._first_epoch = None
        self.keys = list(COCO_KEYS)
        self.history = []       # [(epoch, {key: value}, seconds)]
        self.prepare_early = False  # set under a time budget: prepare() at train begin
        self.estimate = None        # seconds one evaluation takes (prepare())

    # ------------------------------------------------------------------ when
    def on_train_begin(self, logs=None):
        self._first_epoch = None
        if self.prepare_early and self.estimate is None and self.is_chief \
                and self.image_ids:
            self.prepare()

    def _due(self, epoch):
        if self._first_epoch is None:
            self._first_epoch = epoch
        last = epoch + 1 >= int(self.params.get("epochs") or 0) or self.model.stop_training
        if self.every == "last":
            return last
        return epoch == self._first_epoch or (epoch + 1) % self.every == 0 or last

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.is_chief or not self.image_ids:
            return
        if not self._due(epoch):
            logs.update({k: math.nan for k in self.keys})  # the epoch CSV keeps its columns
            return
        t0 = time.perf_counter()
        metrics = self.evaluate(epoch + 1)
        seconds = time.perf_counter() - t0
        metrics["eval_seconds"] = round(seconds, 3)
        self.keys = list(metrics)
        logs.update(metrics)
        self.history.append((epoch + 1, dict(metrics), seconds))
        log.info("Epoch %d evaluation on %d val images (%.1f s): %s", epoch + 1,
                 len(self.image_ids), seconds,
                 ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                           if k != "eval_seconds"))

    # ------------------------------------------------------------------ how long
    def prepare(self):
        """Builds the evaluation model now and times its parts, so that a time budget
        keeps room for the final evaluation (seconds_needed()): one batch through the
        graph (after its tracing), the paste and records of a full batch of detections
        (DETECTION_MAX_INSTANCES per image: what a trained model returns at a low
        threshold), the COCO scoring of such predictions and the run report's
        pictures. Returns the estimate."""
        from mrcnn.evaluation.timing import evaluation_estimate
        if self.inference is None:
            self._build()
        self.copy_weights()
        t0 = time.perf_counter()
        self.estimate = evaluation_estimate(self, len(self.image_ids))
        if self.log_dir and self.report_images:  # the run report's pictures, measured
            self.estimate += report_seconds(self._gt, self.dataset, self.image_ids,
                                            self.report_images)
        log.info("Evaluation model ready in %.1f s; the evaluation of %d val images "
                 "will take about %.0f s.", time.perf_counter() - t0,
                 len(self.image_ids), self.estimate)
        return self.estimate

    def seconds_needed(self):
        """Seconds the final evaluation is expected to take (0 before prepare())."""
        if not self.is_chief or not self.image_ids:
            return 0.0
        if self.history:  # an evaluation already ran: its own time, with the margin
            return max(self.estimate or 0.0, 1.2 * self.history[-1][2])
        return self.estimate or 0.0

    # ------------------------------------------------------------------ how
    def _build(self):
        if self.build_inference is None:
            raise RuntimeError("EvaluationCallback needs an inference model: pass it to "
                               "MaskRCNN.train(evaluation=...), which provides one, or set "
                               "build_inference=fn(config, model_dir) -> MaskRCNN.")
        model_dir = os.path.dirname(self.log_dir) if self.log_dir else "."
        self.inference = self.build_inference(self.config, model_dir)
        self._pairs = weight_pairs(self.model, self.inference.keras_model)
        self._gt = self.ground_truth(self.dataset, self.image_ids)
        self._bands = {}

    def copy_weights(self):
        """The training model's current weights into the evaluation model."""
        for src, dst in self._pairs:
            dst.set_weights(src.get_weights())

    def evaluate(self, epoch):
        """{key: value} of the current training weights on the val subset."""
        if self.inference is None:
            self._build()
        self.copy_weights()
        predictions, panel, samples = self._detect_all()
        coco = evaluate_coco(self._gt, predictions, iou_types=("segm", "boundary", "bbox"),
                             per_class=False, band_cache=self._bands)
        metrics = {key: float(coco[key.split("_")[0]][key.split("_")[1]])
                   for key in COCO_KEYS}
        if self.metrics_fn is not None:
            metrics.update({k: float(v) for k, v in
                            self.metrics_fn(self._gt, predictions).items()})
        if self.log_dir and self.report_images:
            self.report = write_evaluation_report(
                self.log_dir, self._gt, predictions, samples, self.dataset.class_names,
                epoch=epoch, coco_metrics=coco)
            log.info(describe_report(self.report))
        del predictions, coco, samples
        self._write_tensorboard(epoch, metrics, panel)
        return metrics

    def _detect_all(self):
        """Prediction records of every subset image; overlays of the first few and
        the report's samples (image, labels, detections) of the first report_images."""
        predictions, panel, samples = [], [], []
        names = self.dataset.class_names
        size = self.config.BATCH_SIZE
        for start in range(0, len(self.image_ids), size):
            ids = self.image_ids[start:start + size]
            images = [self.dataset.load_image(i) for i in ids]      # [H, W, 3] each
            # a short last batch repeats its last image: one batch shape, one trace
            results = self.inference.detect(images + images[-1:] * (size - len(ids)))
            for image_id, image, result in zip(ids, images, results):
                name = os.path.basename(str(self.dataset.image_reference(image_id)))
                predictions += self.to_records(result, int(image_id), name,
                                               len(predictions) + 1)
                if len(panel) < self.panel_images and self.log_dir:
                    panel.append(_overlay(image, result, names))
                if len(samples) < self.report_images and self.log_dir:
                    masks, class_ids = self.dataset.load_mask(image_id)
                    samples.append({"image": image, "gt_masks": masks, "name": name,
                                    "gt_class_ids": class_ids, "result": result})
            del results, images                                     # full masks freed
        return predictions, panel, samples

    def _write_tensorboard(self, epoch, metrics, panel):
        if not self.log_dir:
            return
        import tensorflow as tf
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, "evaluation"))
        with self._writer.as_default(step=epoch):
            for key, value in metrics.items():
                tf.summary.scalar(key, value)
            for i, image in enumerate(panel):
                tf.summary.image(f"val_detections/{i}", image[None], max_outputs=1)
        self._writer.flush()


def _class_id_records(result, image_id, filename, first_id):
    return detection_to_records(image_id, filename, result, first_id=first_id)


def _overlay(image, result, class_names):
    """uint8 [H, W, 3]: the image with its predicted masks, boxes and labels."""
    from mrcnn.visualize import draw_instances_on_image
    return draw_instances_on_image(image, result["rois"], result["masks"],
                                   result["class_ids"], class_names, result["scores"])

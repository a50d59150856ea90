"""Prediction files: read, write and convert detections.

A prediction is one detected instance, in the COCO results format plus optional
attributes:

    {"image_id": 9813, "category_id": 10, "score": 0.93,
     "bbox": [x, y, w, h],                              # pixels, x/y = top-left
     "segmentation": {"size": [h, w], "counts": "..."},  # compressed COCO RLE
     "attribute_ids": [113, 115]}                        # optional

Files are either JSON Lines (one prediction per line, what `PredictionWriter`
writes) or one JSON list (what COCO / Fashionpedia tools write).
"""

import json
import os

import numpy as np
from pycocotools import mask as mask_utils

from mrcnn.fileio import atomic_open

REQUIRED_KEYS = ("image_id", "category_id", "score")


def _json_default(value):
    """Let json.dumps write numpy scalars and arrays."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _normalise_rle(segmentation):
    """Return a compressed RLE dict {size: [h, w], counts: str} or raise ValueError."""
    if not isinstance(segmentation, dict):
        raise ValueError(
            "'segmentation' must be an RLE dict {size: [h, w], counts: ...}, "
            f"got {type(segmentation).__name__} (polygons are not accepted in predictions)")
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and v >= 0 for v in size)):
        raise ValueError(f"'segmentation.size' must be [height, width] integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    if isinstance(counts, list):  # uncompressed RLE -> compressed
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                   for v in counts):
            raise ValueError("uncompressed RLE 'counts' must be non-negative integers")
        if sum(counts) != h * w:
            raise ValueError(
                f"uncompressed RLE 'counts' sum to {sum(counts)} but size {h}x{w} "
                f"has {h * w} pixels")
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if not isinstance(counts, str):
        raise ValueError(f"'segmentation.counts' must be a string, got {type(counts).__name__}")
    check_rle_counts(counts, h, w)
    return {"size": [h, w], "counts": counts}


# Longest run a compressed-RLE value may encode here: 7 chunks of 5 bits (2^35 pixels).
_MAX_RLE_CHUNKS = 7


def rle_run_lengths(counts):
    """Run lengths of a compressed COCO RLE string (pycocotools' 5-bit LEB128-style
    code: each char is 48 + 6 bits, bit 0x20 = more chunks follow, 0x10 on the last
    chunk = negative; from the third value on each value is a delta to the value two
    places before). Vectorised and linear in len(counts); raises ValueError on any
    malformed string instead of letting a decoder run on garbage."""
    if not counts:
        return np.zeros(0, np.int64)
    c = np.frombuffer(counts.encode("latin-1", errors="replace"), np.uint8).astype(np.int64)
    c -= 48
    bad = np.flatnonzero((c < 0) | (c > 63))
    if bad.size:
        raise ValueError(f"'segmentation.counts' has the character {counts[bad[0]]!r} at "
                         f"position {int(bad[0])}, which compressed RLE never uses")
    last = (c & 0x20) == 0                                    # [L] a value ends here
    if not last[-1]:
        raise ValueError("'segmentation.counts' ends in the middle of a value")
    group = np.concatenate([[0], np.cumsum(last)[:-1]])       # [L] value index per char
    starts = np.concatenate([[0], np.flatnonzero(last)[:-1] + 1])
    k = np.arange(len(c)) - starts[group]                     # [L] chunk index in value
    if k.max() >= _MAX_RLE_CHUNKS:
        raise ValueError("'segmentation.counts' encodes a run longer than any image")
    n = int(last.sum())
    values = np.zeros(n, np.int64)
    np.add.at(values, group, (c & 0x1F) << (5 * k))
    ends = np.flatnonzero(last)                               # [n] last char of each value
    negative = (c[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (k[ends][negative] + 1))
    runs = values.copy()
    runs[3::2] = np.cumsum(values[1::2])[1:]                  # odd chain: 1, 3, 5, ...
    runs[4::2] = np.cumsum(values[2::2])[1:]                  # even chain from 2: 2, 4, ...
    return runs


def check_rle_counts(counts, h, w):
    """Raises ValueError unless compressed RLE `counts` decode to exactly h*w pixels."""
    runs = rle_run_lengths(counts)
    if runs.size and runs.min() < 0:
        raise ValueError("'segmentation.counts' decodes to a negative run length")
    total = int(runs.sum())
    if total != h * w:
        raise ValueError(f"'segmentation.counts' decode to {total} pixels but size "
                         f"{h}x{w} has {h * w}")
    return runs


def _attributes_from_probabilities(probabilities, index_to_id, threshold):
    """Threshold [A] probabilities into a sorted list of attribute ids."""
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)  # [A]
    indices = np.flatnonzero(probs >= threshold)  # [k]
    if index_to_id is None:
        return [int(i) for i in indices]
    if len(index_to_id) != probs.shape[0]:
        raise ValueError(
            f"'attribute_probabilities' has {probs.shape[0]} values but "
            f"attribute_index_to_id has {len(index_to_id)} entries; pass the mapping "
            "of the model that made these predictions")
    return [int(index_to_id[i]) for i in indices]


def normalise_prediction(raw, attribute_index_to_id=None, attribute_threshold=0.5):
    """Validate one raw prediction dict and return a clean copy.

    Raises ValueError with a short description of the problem (without location:
    callers add the file and line).
    """
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ValueError(f"missing key(s) {', '.join(repr(k) for k in missing)}")
    if "segmentation" not in raw and "bbox" not in raw:
        raise ValueError("needs a 'segmentation' (RLE) or a 'bbox' [x, y, w, h]")
    try:
        score = float(raw["score"])
    except (TypeError, ValueError):
        raise ValueError(f"'score' must be a number, got {raw['score']!r}") from None
    if not np.isfinite(score):
        raise ValueError(f"'score' must be finite, got {raw['score']!r}")
    for key in ("image_id", "category_id"):
        if isinstance(raw[key], bool) or not isinstance(raw[key], (int, str)):
            raise ValueError(f"'{key}' must be an integer or string, got {raw[key]!r}")
    out = dict(raw)
    out["score"] = score
    if "segmentation" in raw:
        out["segmentation"] = _normalise_rle(raw["segmentation"])
    if "bbox" in raw:
        bbox = raw["bbox"]
        if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            raise ValueError(f"'bbox' must be [x, y, width, height] numbers, got {bbox!r}")
        if not all(np.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
            raise ValueError(f"'bbox' must be finite with width, height >= 0, got {bbox!r}")
        out["bbox"] = [float(v) for v in bbox]
    else:
        out["bbox"] = [float(v) for v in mask_utils.toBbox(out["segmentation"])]
    if "attribute_ids" in raw:
        ids = raw["attribute_ids"]
        if not isinstance(ids, list) or not all(isinstance(a, int) for a in ids):
            raise ValueError(f"'attribute_ids' must be a list of integers, got {ids!r}")
    elif raw.get("attribute_probabilities") is not None:
        out["attribute_ids"] = _attributes_from_probabilities(
            raw["attribute_probabilities"], attribute_index_to_id, attribute_threshold)
    return out


# One prediction line longer than this is refused (a 4k mask's RLE is well under 1 MiB).
MAX_LINE_BYTES = 64 << 20


class _BadLine(ValueError):
    """A line that is not one JSON object (reported or skipped like a bad record)."""


def _iter_raw(path):
    """Yield (location, raw object) for each prediction in a JSONL or JSON-list file;
    a line that is not JSON yields a _BadLine instead of an object."""
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if head.startswith("["):
            try:
                items = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}: line {e.lineno}: invalid JSON ({e.msg}); the file must be "
                    "one JSON list or JSON Lines (one prediction per line)") from None
            for i, item in enumerate(items if isinstance(items, list) else [items]):
                yield f"item {i}", item
            return
        number = 0
        while True:
            line = f.readline(MAX_LINE_BYTES)
            if not line:
                return
            number += 1
            if len(line) >= MAX_LINE_BYTES and not line.endswith("\n"):
                raise ValueError(f"{path}: line {number} is longer than "
                                 f"{MAX_LINE_BYTES >> 20} MiB; each line must hold one "
                                 "prediction object")
            if not line.strip():
                continue
            try:
                yield f"line {number}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"line {number}", _BadLine(
                    f"invalid JSON ({e.msg} at column {e.colno}); each line must hold one "
                    "prediction object")


def check_against_images(pred, image_sizes=None, category_ids=None):
    """Checks a normalised prediction against what the ground truth knows: its image
    exists, its mask has that image's size, its category is known. Raises ValueError."""
    if image_sizes is not None:
        size = image_sizes.get(pred["image_id"])
        if size is None:
            raise ValueError(f"image_id {pred['image_id']!r} is not one of the known images "
                             "(the annotations or the image list)")
        seg = pred.get("segmentation")
        if seg is not None and tuple(seg["size"]) != tuple(int(v) for v in size):
            raise ValueError(f"the mask is {seg['size'][0]}x{seg['size'][1]} but image "
                             f"{pred['image_id']!r} is {size[0]}x{size[1]}; write masks at "
                             "the original image size")
    if category_ids is not None and pred["category_id"] not in category_ids:
        raise ValueError(f"category_id {pred['category_id']!r} is not one of the "
                         "annotations' categories")
    return pred


def read_predictions(path, attribute_index_to_id=None, attribute_threshold=0.5,
                     image_sizes=None, category_ids=None, skipped=None):
    """Yield normalised prediction dicts from a JSON Lines or JSON-list file.

    Every record is validated before use: keys and types, finite score and bbox, RLE
    counts that decode to exactly height x width pixels (checked in time linear in the
    string, so garbage can never make a decoder spin), and, when given, the image size
    and known category ids.

    Args:
        path: the predictions file.
        attribute_index_to_id: optional list mapping the contiguous attribute index
            of `attribute_probabilities` to dataset attribute ids.
        attribute_threshold: probability at which an attribute counts as present.
        image_sizes: optional {image_id: (height, width)} of the ground truth.
        category_ids: optional collection of the known category ids.
        skipped: None to stop at the first bad record (ValueError naming the file and
            line); a list to skip bad records instead, appending "line N: reason".

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a record is malformed; the message names the file and line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"predictions file {path} does not exist; check the path")
    for where, raw in _iter_raw(path):
        try:
            if isinstance(raw, _BadLine):
                raise raw
            pred = normalise_prediction(raw, attribute_index_to_id, attribute_threshold)
            yield check_against_images(pred, image_sizes, category_ids)
        except ValueError as e:
            if skipped is None:
                raise ValueError(f"{path}: {where}: {e}") from None
            skipped.append(f"{where}: {e}")


class PredictionWriter:
    """Write predictions as JSON Lines, atomically (through mrcnn.fileio.atomic_open).

    Lines go to a temporary file beside `path`; on a clean exit it becomes `path`, on
    an exception it is removed, so `path` is never half written.

    Example:
        with PredictionWriter("out/predictions.jsonl") as writer:
            for record in detection_to_records(...):
                writer.write(record)
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.count = 0
        self._file = None
        self._atomic = None

    def __enter__(self):
        self._atomic = atomic_open(self.path, "w")
        self._file = self._atomic.__enter__()
        return self

    def write(self, record):
        """Write one prediction dict as one line."""
        if self._file is None:
            raise RuntimeError("PredictionWriter.write called outside its 'with' block")
        self._file.write(json.dumps(record, default=_json_default, separators=(",", ":")))
        self._file.write("\n")
        self.count += 1

    def write_all(self, records):
        for record in records:
            self.write(record)

    def __exit__(self, exc_type, exc, tb):
        atomic, self._atomic, self._file = self._atomic, None, None
        atomic.__exit__(exc_type, exc, tb)
        return False


def encode_mask(mask):
    """[H, W] bool mask -> compressed RLE dict {size: [h, w], counts: str}."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))  # Fortran order
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _category_lookup(mapping, class_id):
    if mapping is None:
        return int(class_id)
    if callable(mapping):
        return int(mapping(int(class_id)))
    try:
        return int(mapping[int(class_id)])
    except (KeyError, IndexError):
        raise ValueError(
            f"class id {int(class_id)} has no entry in class_id_to_category_id; "
            "pass the mapping of the dataset the model was trained on") from None


def detection_to_records(image_id, filename, result, class_id_to_category_id=None,
                         attribute_index_to_id=None, attribute_threshold=0.5, first_id=1):
    """Convert one matterport `detect()` result into JSON-able prediction dicts.

    Args:
        image_id: the dataset's image id (written as is).
        filename: the image's file name (kept for humans and submissions).
        result: dict with `rois` [N, (y1, x1, y2, x2)] pixels (y2/x2 exclusive),
            `class_ids` [N], `scores` [N], `masks` [H, W, N] bool, optional
            `attribute_probabilities` [N, A] and `mask_scores` [N].
        class_id_to_category_id: dict, list or callable mapping the model's class
            ids to dataset category ids; None keeps the class ids.
        attribute_index_to_id: list mapping attribute index -> attribute id.
        attribute_threshold: probability at which an attribute is predicted.
        first_id: `id` of the first record; the rest count up from it.

    Returns:
        list of N dicts with keys image_id, filename, category_id, bbox [x, y, w, h],
        score, segmentation {size [h, w], counts str}, mask_mean_score,
        mask_area_fraction, attribute_probabilities, attribute_ids, id.
    """
    rois = np.asarray(result["rois"]).reshape(-1, 4)  # [N, 4] (y1, x1, y2, x2)
    class_ids = np.asarray(result["class_ids"]).reshape(-1)  # [N]
    scores = np.asarray(result["scores"]).reshape(-1)  # [N]
    masks = np.asarray(result["masks"])  # [H, W, N] bool
    n = rois.shape[0]
    if masks.ndim != 3 or masks.shape[-1] != n or class_ids.shape[0] != n or scores.shape[0] != n:
        raise ValueError(
            f"detection result for image {image_id} is inconsistent: rois {rois.shape}, "
            f"class_ids {class_ids.shape}, scores {scores.shape}, masks {masks.shape}; "
            "expected N rois, N class ids, N scores and masks [H, W, N]")
    probs = result.get("attribute_probabilities")
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float32)
        probs = probs.reshape(n, probs.shape[-1] if probs.ndim > 1 else -1)  # [N, A]
    mask_scores = result.get("mask_scores")
    mask_scores = None if mask_scores is None else np.asarray(mask_scores).reshape(-1)  # [N]
    pixels = float(masks.shape[0] * masks.shape[1])
    records = []
    for i in range(n):
        y1, x1, y2, x2 = (float(v) for v in rois[i])
        mask = masks[:, :, i].astype(bool)  # [H, W]
        record = {
            "image_id": image_id,
            "filename": filename,
            "category_id": _category_lookup(class_id_to_category_id, class_ids[i]),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(scores[i]),
            "segmentation": encode_mask(mask),
            "mask_mean_score": None if mask_scores is None else float(mask_scores[i]),
            "mask_area_fraction": float(mask.sum()) / pixels if pixels else 0.0,
            "attribute_probabilities": None,
            "attribute_ids": [],
            "id": first_id + i,
        }
        if probs is not None:
            record["attribute_probabilities"] = [round(float(p), 5) for p in probs[i]]
            record["attribute_ids"] = _attributes_from_probabilities(
                probs[i], attribute_index_to_id, attribute_threshold)
        records.append(record)
    return records

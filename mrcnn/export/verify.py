"""Export self-checks: a converted model must reproduce the TensorFlow function on probe
images before it is written: the same detections and class ids, boxes within 0.5 px,
scores and attribute probabilities within 1e-4, pasted mask IoU >= 0.99.

Detections are matched to each other (class and box), not compared row by row, and
ties do not count as differences (``match``): two nearly equal scores may come out in
either order; a class may differ where TensorFlow's own top two class probabilities
lie within the score tolerance (the converted model then makes the runner-up class's
detection, which ``mrcnn.export.ties`` computes); and a detection may be present on one
side only when a tie decides it: its score lies within the tolerance of
DETECTION_MIN_CONFIDENCE or (both sides full) of the last score kept at
DETECTION_MAX_INSTANCES, or NMS chose between it and an overlapping detection of its
class whose score is within the tolerance or whose own class was a tie.
"""
import numpy as np
import tensorflow as tf

from mrcnn.export.metadata import ExportError

TOLERANCES = {"box_px": 0.5, "score": 1e-4, "attribute": 1e-4, "mask_iou": 0.99}
# Pixel boxes are rounded, so the overlap NMS saw is known only roughly (a box a few
# pixels wide can change its IoU by half); an overlap above this share of the NMS
# threshold counts as "NMS chose between them".
NMS_OVERLAP_SHARE = 0.5


def probe_images(config):
    """Two smooth pseudo-photos: one smaller than the input, one larger and wider."""
    rng = np.random.default_rng(0)
    side = int(config.IMAGE_MAX_DIM)
    images = []
    for h, w in [(max(8, side * 3 // 4), max(8, side // 2)), (side + 37, side * 2 - 5)]:
        walk = np.cumsum(rng.integers(-5, 6, (h, w, 3)), axis=0)
        walk = walk + np.cumsum(rng.integers(-5, 6, (1, w, 3)), axis=1)
        images.append(np.clip(walk + 128, 0, 255).astype(np.uint8))
    return images


def _rows(outputs):
    """One image's detections (batch row 0) as numpy arrays."""
    n = int(np.asarray(outputs["num_detections"])[0])
    rows = {"boxes": np.asarray(outputs["detection_boxes"], np.float64)[0, :n],
            "classes": np.asarray(outputs["detection_classes"]).astype(np.int64)[0, :n],
            "scores": np.asarray(outputs["detection_scores"], np.float64)[0, :n],
            "masks": np.asarray(outputs["detection_masks"], np.float32)[0, :n]}
    if "detection_attributes" in outputs:
        rows["attributes"] = np.asarray(outputs["detection_attributes"], np.float64)[0, :n]
    return rows


def _iou(a, b):
    """IoU of pixel boxes a [4] and b [N, 4] -> [N]."""
    y1, x1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    y2, x2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.maximum(y2 - y1, 0) * np.maximum(x2 - x1, 0)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _agreement(e, i, g, tol):
    """[G] how far each converted row is from TF row i in units of the tolerances (box,
    score, attributes; the largest), inf for another class."""
    cost = np.maximum(np.abs(g["boxes"] - e["boxes"][i]).max(axis=1) / tol["box_px"],
                      np.abs(g["scores"] - e["scores"][i]) / tol["score"])
    if "attributes" in e:
        attrs = np.abs(g["attributes"] - e["attributes"][i]).max(axis=1, initial=0.0)
        cost = np.maximum(cost, attrs / tol["attribute"])
    return np.where(g["classes"] == e["classes"][i], cost, np.inf)


def _pair(e, g, tol):
    """Greedy one-to-one pairs (i, j) of same-class detections whose boxes, scores and
    attributes agree within tol, each TF row (score order) taking its closest free
    counterpart (boxes of degenerate models can coincide; attributes tell them apart)."""
    free, pairs = np.ones(len(g["classes"]), bool), []
    for i in range(len(e["classes"])):
        cost = np.where(free, _agreement(e, i, g, tol), np.inf)
        if cost.size and cost.min() <= 1.0:
            j = int(np.argmin(cost))
            free[j] = False
            pairs.append((i, j))
    return pairs


def _class_ties(expected, g, free, tol, config):
    """Converted rows (indices in free) that are the detection a TF ROI makes with a
    class other than its top one whose probability lies within the score tolerance of
    the top one's (expected: the reference's tie outputs)."""
    probs = np.asarray(expected["roi_probs"], np.float64)[0]            # [R, C]
    boxes = np.asarray(expected["roi_boxes"], np.float64)[0]            # [R, C, 4]
    top = probs.argmax(axis=1)
    tied = (probs.max(axis=1, keepdims=True) - probs <= tol["score"]) \
        & (np.arange(probs.shape[1]) != top[:, None]) \
        & (probs >= float(config.DETECTION_MIN_CONFIDENCE) - tol["score"])
    found = []
    for j in free:
        c = int(g["classes"][j])
        ok = tied[:, c] & (np.abs(boxes[:, c] - g["boxes"][j]).max(axis=1) <= tol["box_px"]) \
            & (np.abs(probs[:, c] - g["scores"][j]) <= tol["score"])
        if ok.any():
            tied[int(np.argmax(ok)), :] = False      # one detection per ROI
            found.append(j)
    return found


def _boundary(rows, k, config, tol, both_full):
    """Row k sits on a score boundary: the confidence threshold, or (when both sides
    kept DETECTION_MAX_INSTANCES rows, so each had to leave tied rows out) the lowest
    score kept."""
    score = rows["scores"][k]
    if score - float(config.DETECTION_MIN_CONFIDENCE) <= tol["score"]:
        return True
    return both_full and score - rows["scores"].min() <= tol["score"]


def _nms_ties(sides, unexplained, tied, config, tol):
    """Accepts unmatched rows that NMS decided against a tied neighbour; sides: (TF
    rows, converted rows); unexplained / tied: a set of row indices per side (updated)."""
    limit = NMS_OVERLAP_SHARE * float(config.DETECTION_NMS_THRESHOLD)
    changed = True
    while changed:
        changed = False
        for s in (0, 1):
            for k in sorted(unexplained[s]):
                row = sides[s]
                for t in (0, 1):
                    other = sides[t]
                    near = (_iou(row["boxes"][k], other["boxes"]) > limit) \
                        & (other["classes"] == row["classes"][k])
                    if t == s:
                        near[k] = False
                    close = np.abs(other["scores"] - row["scores"][k]) <= tol["score"]
                    marked = np.zeros(len(near), bool)
                    marked[list(tied[t])] = True
                    if (near & (close | marked)).any():
                        unexplained[s].discard(k)
                        tied[s].add(k)
                        changed = True
                        break


def _describe(rows, k, side):
    box = ", ".join(str(int(round(v))) for v in rows["boxes"][k])
    return (f"{side} detection of class {int(rows['classes'][k])} (score "
            f"{rows['scores'][k]:.4g}, box [{box}])")


def _mask_problem(e, g, pairs, image_shape, tol):
    """(problem or None, smallest IoU of the pairs' pasted masks)."""
    from mrcnn.export.results import paste_masks
    if not pairs:
        return None, 1.0
    i, j = (np.array(x) for x in zip(*pairs))
    mask_e, _ = paste_masks(e["boxes"][i], e["masks"][i], image_shape)
    mask_g, _ = paste_masks(g["boxes"][j], g["masks"][j], image_shape)
    a, b = mask_e.reshape(-1, len(i)), mask_g.reshape(-1, len(i))
    union = np.logical_or(a, b).sum(0)
    iou = np.where(union > 0, np.logical_and(a, b).sum(0) / np.maximum(union, 1), 1.0)
    if iou.min() < tol["mask_iou"]:
        return f"a pasted mask has IoU {iou.min():.3f} with TensorFlow's", float(iou.min())
    return None, float(iou.min())


def _unmatched_problem(e, g, unexplained, tol):
    """The sentence fragment for detections left without a counterpart."""
    if not unexplained[0]:
        return f"{_describe(g, min(unexplained[1]), 'an extra')} is not TensorFlow's"
    i = min(unexplained[0])
    near = [j for j in unexplained[1] if g["classes"][j] == e["classes"][i]]
    if not near:
        return f"{_describe(e, i, 'a TensorFlow')} has no counterpart"
    j = min(near, key=lambda j: _agreement(e, i, g, tol)[j])
    parts = [f"box off by {np.abs(g['boxes'][j] - e['boxes'][i]).max():.3g} px",
             f"score off by {abs(g['scores'][j] - e['scores'][i]):.3g}"]
    if "attributes" in e:
        parts.append("attributes off by "
                     f"{np.abs(g['attributes'][j] - e['attributes'][i]).max():.3g}")
    return f"{_describe(e, i, 'a TensorFlow')} comes out with its {', '.join(parts)}"


def match(expected, got, config, image_shape, tol=TOLERANCES):
    """Compares one image's outputs (dicts of arrays, batch 1); expected is the TF
    reference with ``mrcnn.export.ties`` outputs. Returns (problem sentence fragment or
    None, figures: matched, class_ties, one_sided, box_px, score, min_mask_iou)."""
    e, g = _rows(expected), _rows(got)
    pairs = _pair(e, g, tol)
    free_e = set(range(len(e["classes"]))) - {i for i, _ in pairs}
    free_g = sorted(set(range(len(g["classes"]))) - {j for _, j in pairs})
    flipped = _class_ties(expected, g, free_g, tol, config)
    margin = np.asarray(expected["tie_margin"], np.float64)[0]
    tied = [{i for i in free_e if margin[i] <= tol["score"]}, set(flipped)]
    unexplained = [free_e - tied[0], set(free_g) - tied[1]]
    full = min(len(e["scores"]), len(g["scores"])) >= int(config.DETECTION_MAX_INSTANCES)
    for s, rows in ((0, e), (1, g)):
        unexplained[s] -= {k for k in unexplained[s]
                           if _boundary(rows, k, config, tol, full)}
    _nms_ties((e, g), unexplained, tied, config, tol)
    if unexplained[0] or unexplained[1]:
        return _unmatched_problem(e, g, unexplained, tol), {}
    problem, iou = _mask_problem(e, g, pairs, image_shape, tol)
    idx = [np.array(x, int) for x in zip(*pairs)] if pairs else [np.zeros(0, int)] * 2
    figures = {"matched": len(pairs), "class_ties": len(flipped),
               "one_sided": len(free_e) + len(free_g) - len(flipped),
               "box_px": float(np.abs(e["boxes"][idx[0]] - g["boxes"][idx[1]]).max(initial=0)),
               "score": float(np.abs(e["scores"][idx[0]] - g["scores"][idx[1]]).max(initial=0)),
               "min_mask_iou": iou}
    return problem, figures


def check_against_tf(tf_fn, run_converted, config, fmt, tol=TOLERANCES):
    """Runs tf_fn (uint8 [1, H, W, 3] -> outputs with tie outputs, see
    ``mrcnn.export.ties``) and run_converted (numpy image batch -> dict of arrays) on the
    probe images; raises ExportError when they differ. Returns the figures summed over
    the probe images (matched, class_ties, one_sided; worst box_px, score, min_mask_iou)."""
    total = {"images": 0, "matched": 0, "class_ties": 0, "one_sided": 0, "box_px": 0.0,
             "score": 0.0, "min_mask_iou": 1.0}
    for image in probe_images(config):
        expected = {k: v.numpy() for k, v in tf_fn(tf.constant(image[None])).items()}
        problem, figures = match(expected, run_converted(image[None]), config,
                                 image.shape, tol)
        if problem:
            raise ExportError(f"The {fmt} model does not reproduce TensorFlow on a "
                              f"{image.shape[0]}x{image.shape[1]} probe image ({problem}); "
                              "the export was not written.")
        total["images"] += 1
        for key in ("matched", "class_ties", "one_sided"):
            total[key] += figures[key]
        total["box_px"] = max(total["box_px"], figures["box_px"])
        total["score"] = max(total["score"], figures["score"])
        total["min_mask_iou"] = min(total["min_mask_iou"], figures["min_mask_iou"])
    return total

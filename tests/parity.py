"""Strict comparison of exported models' results with detect()'s (shared by the export
and serve tests): same count and class ids, boxes within 0.5 px, scores and attribute
probabilities within 1e-4, mask IoU >= 0.99 per instance.

Detections are paired one to one, not by position: two detections whose scores agree to
within the score tolerance may come out in either order (the runtimes' sums differ in
the last float bits, so a sort of equal scores may swap them). Every other difference
still fails."""
import numpy as np

BOX_PX, SCORE, ATTR, MASK_IOU = 0.5, 1e-4, 1e-4, 0.99


def mask_ious(a, b):
    """Per-instance IoU of masks [H, W, N] (two empty masks count as equal)."""
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    inter = np.logical_and(a, b).sum(0)
    union = np.logical_or(a, b).sum(0)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def pair_order(ref, got):
    """Index into got for each of ref's detections: got's row at the same position,
    unless that row is not ref's (another class, box or score) and another row is. Both
    lists are sorted by score (compare checks), so a pairing that matches every score
    within SCORE only ever swaps tied rows."""
    n = len(ref["class_ids"])
    order, free = [], list(range(len(got["class_ids"])))
    for i in range(n):
        def same(j):
            return (got["class_ids"][j] == ref["class_ids"][i]
                    and abs(float(got["scores"][j]) - float(ref["scores"][i])) <= SCORE
                    and np.abs(got["rois"][j].astype(float) - ref["rois"][i]).max()
                    <= BOX_PX)
        j = i if i in free and same(i) else next((j for j in free if same(j)), None)
        if j is None:                        # no counterpart: keep the position
            j = i if i in free else free[0]  # so the asserts below name the difference
        free.remove(j)
        order.append(j)
    return np.array(order, int)


def reorder(key, value, order, n):
    """value with its per-detection axis (masks: the last) taken in order."""
    value = np.asarray(value) if isinstance(value, (list, tuple)) else value
    if not isinstance(value, np.ndarray) or not n:
        return value
    axis = -1 if key == "masks" else 0
    return np.take(value, order, axis=axis) if value.shape[axis] == n else value


def compare(ref, got, figures=None, where=""):
    """Asserts one image's results agree; folds the worst differences into figures."""
    n = len(ref["class_ids"])
    assert len(got["class_ids"]) == n, f"{where}: {len(got['class_ids'])} detections, " \
                                        f"detect() has {n}"
    for side, rows in (("detect()", ref), ("got", got)):
        assert np.all(np.diff(np.asarray(rows["scores"], float)) <= SCORE), \
            f"{where}: {side}'s detections are not sorted by score"
    order = pair_order(ref, got)
    got = {k: reorder(k, v, order, n) for k, v in got.items()}
    np.testing.assert_array_equal(got["class_ids"], ref["class_ids"], err_msg=where)
    box = float(np.abs(got["rois"].astype(float) - ref["rois"]).max()) if n else 0.0
    score = float(np.abs(got["scores"] - ref["scores"]).max()) if n else 0.0
    iou = float(mask_ious(ref["masks"], got["masks"]).min()) if n else 1.0
    attr = 0.0
    if "attribute_probabilities" in ref and n:
        attr = float(np.abs(got["attribute_probabilities"]
                            - ref["attribute_probabilities"]).max())
    assert box <= BOX_PX, f"{where}: boxes differ by {box} px"
    assert score <= SCORE, f"{where}: scores differ by {score}"
    assert iou >= MASK_IOU, f"{where}: a mask IoU is {iou}"
    assert attr <= ATTR, f"{where}: attribute probabilities differ by {attr}"
    if figures is not None:
        figures["box_px"] = max(figures.get("box_px", 0.0), box)
        figures["score"] = max(figures.get("score", 0.0), score)
        figures["attr"] = max(figures.get("attr", 0.0), attr)
        figures["min_mask_iou"] = min(figures.get("min_mask_iou", 1.0), iou)
        figures["detections"] = figures.get("detections", 0) + n
    return figures

"""COCO-format ground truth of any prepared utils.Dataset (compressed RLE masks).

Category ids are the dataset's class ids, the ids detection_to_records writes when it
is given no class-to-category mapping, so predictions and ground truth agree without
one. Applications with their own category ids pass their own builder where one is
taken (e.g. EvaluationCallback(ground_truth=...)).
"""
import os

from mrcnn.evaluation.predictions import encode_mask


def dataset_ground_truth(dataset, image_ids=None):
    """{"images", "annotations", "categories"} of the dataset's images (all by default)."""
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    images, annotations = [], []
    for image_id in ids:
        masks, class_ids = dataset.load_mask(image_id)             # [H, W, N], [N]
        h, w = masks.shape[:2]
        name = os.path.basename(str(dataset.image_reference(image_id)))
        images.append({"id": int(image_id), "height": int(h), "width": int(w),
                       "file_name": name})
        for i in range(masks.shape[-1]):
            annotations.append({"id": len(annotations) + 1, "image_id": int(image_id),
                                "category_id": int(class_ids[i]), "iscrowd": 0,
                                "segmentation": encode_mask(masks[:, :, i])})
    categories = [{"id": i, "name": n} for i, n in enumerate(dataset.class_names) if i > 0]
    return {"images": images, "annotations": annotations, "categories": categories}

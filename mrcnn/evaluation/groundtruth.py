"""COCO-format ground truth of any prepared utils.Dataset (compressed RLE masks).

By default category ids are the dataset's class ids, the ids detection_to_records writes
when it is given no class-to-category mapping, so predictions and ground truth agree
without one. A dataset with its own category ids (the fashion app's, which keep the
source file's ids) passes them as `category_ids`; a dataset with an attribute head
(``num_attributes``, ``load_attributes``, ``attribute_index_to_id``, ``attribute_names``)
gets each annotation's ``attribute_ids`` and an ``attributes`` list.
"""
import os

import numpy as np

from mrcnn.evaluation.predictions import encode_mask


def dataset_ground_truth(dataset, image_ids=None, category_ids=None, progress=None):
    """{"images", "annotations", "categories"[, "attributes"]} of the dataset's images.

    Args:
        dataset: a prepared utils.Dataset.
        image_ids: the images to convert (default: all).
        category_ids: [num_classes] category id of each class index (default: the
            class index itself); index 0, the background, is not listed.
        progress: optional wrapper of the image-id iterable (e.g. tqdm).
    """
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    if category_ids is None:
        category_ids = range(len(dataset.class_names))
    category_ids = [int(c) for c in category_ids]
    num_attributes = int(getattr(dataset, "num_attributes", 0) or 0)
    attr_ids = np.asarray(dataset.attribute_index_to_id) if num_attributes else None  # [A]
    images, annotations = [], []
    for image_id in (progress(ids) if progress else ids):
        masks, class_ids = dataset.load_mask(image_id)             # [H, W, N], [N]
        attrs = dataset.load_attributes(image_id) if num_attributes else None  # [N, A]
        h, w = masks.shape[:2]
        name = os.path.basename(str(dataset.image_reference(image_id)))
        images.append({"id": int(image_id), "height": int(h), "width": int(w),
                       "file_name": name})
        for i in range(masks.shape[-1]):
            annotation = {"id": len(annotations) + 1, "image_id": int(image_id),
                          "category_id": category_ids[int(class_ids[i])], "iscrowd": 0,
                          "segmentation": encode_mask(masks[:, :, i])}
            if num_attributes:
                annotation["attribute_ids"] = [int(a) for a in attr_ids[attrs[i] > 0]]
            annotations.append(annotation)
    categories = [{"id": c, "name": n}
                  for c, n in zip(category_ids[1:], dataset.class_names[1:])]
    out = {"images": images, "annotations": annotations, "categories": categories}
    if num_attributes:
        out["attributes"] = [{"id": int(a), "name": n}
                             for a, n in zip(attr_ids, dataset.attribute_names)]
    return out

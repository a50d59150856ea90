"""COCO-format ground truth of a FashionDataset, as evaluate writes and scores it."""
import os


def gt_coco(dataset, image_ids=None, progress=None):
    """COCO-format ground truth (compressed RLE masks) of a dataset's images.

    Image ids are the dataset's internal ids, category ids the source's ids and every
    annotation carries its attribute ids. Masks are encoded image by image.
    """
    import numpy as np

    from mrcnn.evaluation.predictions import encode_mask
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    images, annotations = [], []
    attr_ids = np.asarray(dataset.attribute_index_to_id)           # [A]
    for image_id in (progress(ids) if progress else ids):
        masks, class_ids = dataset.load_mask(image_id)             # [H, W, N], [N]
        attrs = (dataset.load_attributes(image_id) if dataset.num_attributes
                 else np.zeros((len(class_ids), 0), np.uint8))     # [N, A]
        h, w = masks.shape[:2]
        images.append({"id": int(image_id), "height": int(h), "width": int(w),
                       "file_name": os.path.basename(dataset.image_reference(image_id))})
        for i in range(masks.shape[-1]):
            rle = encode_mask(masks[:, :, i])
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(image_id),
                "category_id": int(dataset.category_ids[class_ids[i]]),
                "segmentation": rle, "iscrowd": 0,
                "attribute_ids": [int(a) for a in attr_ids[attrs[i] > 0]]})
    categories = [{"id": int(c), "name": n}
                  for c, n in zip(dataset.category_ids[1:], dataset.class_names[1:])]
    out = {"images": images, "annotations": annotations, "categories": categories}
    if dataset.num_attributes:
        out["attributes"] = [{"id": int(a), "name": n}
                             for a, n in zip(attr_ids, dataset.attribute_names)]
    return out

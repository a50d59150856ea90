"""train_batches.png: the first training batches as the model receives them.

The batches come from the training pipeline itself (mrcnn.data.pipeline.training_inputs
with the run's config, batch size and augmentation): the image is the model's
``input_image`` plus MEAN_PIXEL, boxes are ``input_gt_boxes`` and masks are
``input_gt_masks`` (mini-masks pasted back into their boxes), so a wrong resize,
augmentation or mask decoding shows in the picture. The pipeline shuffles, so these are
batches of a fresh iterator of the same pipeline, not the very batches of the first
steps.

Example:
    batches = first_batches(dataset_train, config, augmentation)
    plot_batches(batches, config, dataset_train.class_names, "logs/run/train_batches.png")
"""
import numpy as np

from mrcnn.report.plots import save_picture, tile

BATCHES = 2
MAX_TILES = 16   # images drawn at most (large batches: the first of each batch)


def first_batches(data, config, augmentation=None, batches=BATCHES, seed=None):
    """The first `batches` input batches (dicts of numpy arrays) of the training
    pipeline over `data` (a utils.Dataset, an H5 cache, a tf.data of records or a
    TFRecord file pattern)."""
    import tensorflow as tf

    from mrcnn.data.pipeline import NoUsableSamples, SkipCounter, training_inputs
    if isinstance(data, (str, list, tuple)):
        from mrcnn.data.tfrecords import read_tfrecords
        data = read_tfrecords(data, config)
    skips = SkipCounter()
    ds = training_inputs(data, config, int(config.BATCH_SIZE), shuffle=True,
                         augmentation=augmentation, seed=seed, skips=skips,
                         augment=True)  # the config's in-graph augmentation too
    try:
        return list(ds.take(int(batches)).as_numpy_iterator())
    except tf.errors.OpError:
        if skips.exhausted():  # the sentence training would stop with, not TF's error
            raise NoUsableSamples(skips.summary()) from None
        raise


def batch_instances(inputs, config, index):
    """One image of an input batch -> (image uint8 [H, W, 3], boxes [N, 4], masks
    [H, W, N] bool, class ids [N]) as the losses see them (padding left out)."""
    from mrcnn.utils import expand_mask
    image = inputs["input_image"][index] + np.asarray(config.MEAN_PIXEL, np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)             # [H, W, 3]
    class_ids = inputs["input_gt_class_ids"][index]                       # [MAX_GT]
    keep = np.flatnonzero(class_ids != 0)
    boxes = inputs["input_gt_boxes"][index][keep].round().astype(np.int32)  # [N, 4]
    masks = inputs["input_gt_masks"][index][..., keep]                    # [h, w, N]
    if config.USE_MINI_MASK:
        masks = expand_mask(boxes, masks, image.shape)                   # [H, W, N]
    return image, boxes, masks.astype(bool), np.abs(class_ids[keep])


def plot_batches(batches, config, class_names, path, max_tiles=MAX_TILES):
    """Draws the batches' images with their masks, boxes and class names -> PNG."""
    from mrcnn.visualize import draw_instances_on_image
    size = int(config.BATCH_SIZE)
    per_batch = max(1, min(size, max_tiles // max(1, len(batches))))
    pictures, captions = [], []
    for b in range(len(batches)):
        for i in range(per_batch):
            image, boxes, masks, class_ids = batch_instances(batches[b], config, i)
            pictures.append(draw_instances_on_image(image, boxes, masks, class_ids,
                                                    class_names, min_side=384))
            captions.append(f"batch {b + 1}, image {i + 1}: {len(class_ids)} instances")
    shape = "x".join(str(int(s)) for s in config.IMAGE_SHAPE[:2])
    header = (f"The first {len(batches)} training batches as the model receives them "
              f"({shape} px, batch size {size})")
    return save_picture(tile(pictures, captions, per_batch if per_batch > 1 else 4, header),
                        path)

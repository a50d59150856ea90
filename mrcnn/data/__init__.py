"""From files to model inputs: the Dataset base class, records (resized image, masks,
meta), resizing, augmentation, H5 caches, TFRecords and the tf.data pipeline."""

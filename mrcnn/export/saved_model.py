"""TF SavedModel export with two signatures, served by TF Serving as is.

    DIR/1/saved_model.pb, variables/, assets/labels.json

- ``serving_default``: ``images`` tf.string [B] of encoded JPEG / PNG / GIF / BMP bytes,
  any sizes (decoded, resized and molded in the graph);
- ``image_tensor``: ``images`` uint8 [B, H, W, 3] (one size per batch).

Both return the outputs of ``mrcnn.export.serving`` by name. The directory loads with
``tf.saved_model.load`` alone: no Keras, no custom objects, no code of this project.
"""
import os

import tensorflow as tf

from mrcnn.export import preprocess
from mrcnn.export.metadata import ExportError
from mrcnn.export.serving import serving_outputs
from mrcnn.fileio import atomic_directory, write_json

STRING_SPEC = tf.TensorSpec([None], tf.string, name="images")
IMAGE_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")


def image_fn(keras_model, config, mul=preprocess.EXACT_MUL, ties=False):
    """uint8 [B, H, W, 3] -> outputs dict (the image_tensor signature's function);
    ties=True adds the self-checks' tie outputs (mrcnn.export.ties; one image)."""
    def image_tensor(images):
        molded, metas = preprocess.mold_batch(images, config, mul)
        return serving_outputs(keras_model, config, molded, metas, ties=ties)
    return image_tensor


def encoded_fn(keras_model, config):
    """tf.string [B] -> outputs dict (the serving_default signature's function)."""
    def serving_default(images):
        molded, metas = preprocess.decode_batch(images, config)
        return serving_outputs(keras_model, config, molded, metas)
    return serving_default


def write_archive(model, directory, endpoints):
    """Writes a SavedModel of model's weights with endpoints {name: (fn, spec or list
    of specs)}."""
    from keras.export import ExportArchive
    archive = ExportArchive()
    archive.track(model.keras_model)
    for name, (fn, spec) in endpoints.items():
        archive.add_endpoint(name, fn, input_signature=spec if isinstance(spec, list)
                             else [spec])
    try:
        archive.write_out(directory, verbose=False)
    except (ValueError, TypeError, tf.errors.OpError) as e:
        raise ExportError(f"The SavedModel export failed: {' '.join(str(e).split())[:300]}."
                          ) from e


def export_saved_model(model, path, meta, version=1):
    """Writes PATH/<version>/ (a SavedModel with assets/labels.json); returns its path."""
    km, config = model.keras_model, model.config
    target = os.path.join(path, str(int(version)))
    with atomic_directory(target) as tmp:
        write_archive(model, tmp, {"serving_default": (encoded_fn(km, config), STRING_SPEC),
                                   "image_tensor": (image_fn(km, config), IMAGE_SPEC)})
        os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
        write_json(os.path.join(tmp, "assets", "labels.json"), meta)
    return target

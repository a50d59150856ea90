"""The Dataset base class (matterport's ``utils.Dataset``) and image reading.

Subclass it, call ``add_class`` and ``add_image`` in a ``load_*`` method, override
``load_mask`` (and optionally ``load_attributes``), then call ``prepare()``.

Example:
    class ShapesDataset(Dataset):
        def load_shapes(self, count):
            self.add_class("shapes", 1, "square")
            for i in range(count):
                self.add_image("shapes", image_id=i, path=None, width=128, height=128)
        def load_mask(self, image_id):
            ...  # -> masks [H, W, N] bool, class_ids [N] int32
    ds = ShapesDataset(); ds.load_shapes(10); ds.prepare()
"""
import logging

import numpy as np
import skimage.color
import skimage.io
import skimage.util

log = logging.getLogger("mrcnn")


def read_image(path):
    """Reads an image file as uint8 RGB [H, W, 3], with one clear error when unreadable."""
    try:
        image = skimage.io.imread(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file {path} does not exist; check the dataset "
                                "directory or remove the image from the annotations.")
    except Exception as e:
        raise ValueError(f"Image file {path} cannot be read as an image ({e}); "
                         "replace the file or remove it from the annotations.") from e
    if image.ndim == 2:
        image = skimage.color.gray2rgb(image)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"Image file {path} has shape {image.shape}; expected an RGB "
                         "or grayscale image.")
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.dtype != np.uint8:
        image = skimage.util.img_as_ubyte(image)
    return image


class Dataset:
    """Images, their classes and instance masks, under matterport's interface."""

    def __init__(self, class_map=None):
        self._image_ids = []
        self.image_info = []
        # Background is always the first class.
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}

    def add_class(self, source, class_id, class_name):
        """Registers a class of a source (dataset name). Adding it twice is a no-op."""
        assert "." not in source, "Source name cannot contain a dot"
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source, image_id, path, **kwargs):
        """Registers an image; extra keyword arguments are kept in image_info."""
        info = {"id": image_id, "source": source, "path": path}
        info.update(kwargs)
        self.image_info.append(info)

    def image_reference(self, image_id):
        """A string that tells a person which image this is (its path by default)."""
        info = self.image_info[image_id]
        return str(info.get("path") or f"{info['source']}:{info['id']}")

    def prepare(self, class_map=None):
        """Builds the internal ids and lookup tables; call after adding everything."""
        def clean_name(name):
            return ",".join(name.split(",")[:1])

        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [clean_name(c["name"]) for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)
        self.class_from_source_map = {f"{info['source']}.{info['id']}": id
                                      for info, id in zip(self.class_info, self.class_ids)}
        self.image_from_source_map = {f"{info['source']}.{info['id']}": id
                                      for info, id in zip(self.image_info, self.image_ids)}
        self.sources = sorted({i["source"] for i in self.class_info})
        self.source_class_ids = {}
        for source in self.sources:
            self.source_class_ids[source] = [
                i for i, info in enumerate(self.class_info)
                if i == 0 or source == info["source"]]

    def map_source_class_id(self, source_class_id):
        """"source.class_id" -> internal class id."""
        if source_class_id not in self.class_from_source_map:
            raise KeyError(f"Class {source_class_id!r} is not in the dataset; known classes "
                           f"are {sorted(self.class_from_source_map)[:10]}...")
        return self.class_from_source_map[source_class_id]

    def get_source_class_id(self, class_id, source):
        """Internal class id -> the source's own class id."""
        info = self.class_info[class_id]
        assert info["source"] == source
        return info["id"]

    @property
    def image_ids(self):
        return self._image_ids

    def source_image_link(self, image_id):
        """The path or URL of the image."""
        return self.image_info[image_id]["path"]

    def load_image(self, image_id):
        """Loads the image as uint8 RGB [H, W, 3]."""
        return read_image(self.image_info[image_id]["path"])

    def load_mask(self, image_id):
        """Instance masks of an image -> (masks [H, W, N] bool, class_ids [N] int32).

        Override in subclasses. The base class has no annotations, so it returns an
        empty set and logs a warning (matterport's behaviour).
        """
        log.warning("Dataset.load_mask is not overridden: %s has no instances.",
                    self.image_reference(image_id))
        return np.empty([0, 0, 0], dtype=bool), np.empty([0], np.int32)

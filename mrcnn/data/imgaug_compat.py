"""Small compatibility shims for third-party packages on current numpy.

imgaug 0.4.0 reads ``np.sctypes`` (removed in numpy 2.0) and a few removed aliases at
import time. ``import_imgaug()`` restores just those names before importing it, so
matterport-style augmentation code keeps working without pinning numpy < 2.
"""
import numpy as np


def _install_numpy_aliases():
    if not hasattr(np, "sctypes"):
        # The layout imgaug expects: lists of scalar types per kind.
        np.sctypes = {
            "int": [np.int8, np.int16, np.int32, np.int64],
            "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
            "float": [np.float16, np.float32, np.float64],
            "complex": [np.complex64, np.complex128],
            "others": [bool, object, bytes, str, np.void],
        }
    for name, value in (("bool", bool), ("int", int), ("float", float),
                        ("complex", complex), ("object", object), ("str", str)):
        if name not in np.__dict__:
            setattr(np, name, value)


def import_imgaug():
    """Imports and returns the ``imgaug.augmenters`` module, shimming numpy first.

    Raises ImportError with the install command when imgaug is not installed.
    """
    _install_numpy_aliases()
    try:
        import imgaug.augmenters as iaa
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Augmentation needs imgaug: install it with `pip install imgaug==0.4.0` "
            f"({e})") from e
    return iaa

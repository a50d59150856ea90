"""Reading and writing weight files by layer name, with h5py only (no private Keras API).

Two layouts are read:
- the named layout of Keras 2 ``save_weights`` (matterport's ``mask_rcnn_coco.h5``):
  root attribute ``layer_names``; one group per layer with a ``weight_names`` attribute
  (``"conv1/kernel:0"``...). Nested models (matterport's ``rpn_model``) and
  TimeDistributed wrappers are resolved through the layer name inside each weight name.
- Keras 3's own ``.weights.h5`` files, which are matched by topology (by_name=False).

Our checkpoints are written in the named layout, so they load by name into any model
with the same layer names (e.g. a ResNet checkpoint into an EfficientNet model's heads).
"""
import os
from collections import OrderedDict

import h5py
import numpy as np

from mrcnn.fileio import atomic_path


class WeightsLayoutError(ValueError):
    """A weight file whose layout or shapes do not fit the model."""


class SizesMismatch(WeightsLayoutError):
    """A weight file trained with other pyramid/head sizes (e.g. matterport's layout
    into a scaled model); the message names the sizes and the fix."""


def _decode(x):
    return x.decode("utf8") if isinstance(x, bytes) else str(x)


def is_keras3_file(path):
    """True for Keras 3 .weights.h5 files (no layer names stored)."""
    try:
        with h5py.File(path, "r") as f:
            return "layer_names" not in f.attrs and "layers" in f and "model_weights" not in f
    except OSError as e:
        raise WeightsLayoutError(f"{path} is not a readable HDF5 weight file ({e}); "
                                 "download or copy it again.") from e


def read_named_weights(path):
    """{layer name: [arrays in the layer's weight order]} from a named-layout file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weight file {path} does not exist; check the path or "
                                "download it (python weights/download.py --list).")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsLayoutError(f"{path} is not a readable HDF5 weight file ({e}); "
                                 "download it again.") from e
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise WeightsLayoutError(
                f"{path} has no 'layer_names' attribute, so it is not a Keras-2/matterport "
                "named weight file; load Keras 3 .weights.h5 files with by_name=False.")
        weights = OrderedDict()
        for layer_name in (_decode(n) for n in root.attrs["layer_names"]):
            group = root[layer_name]
            for wname in (_decode(n) for n in group.attrs.get("weight_names", [])):
                # "rpn_conv_shared/kernel:0" -> owner layer "rpn_conv_shared"
                owner = wname.split("/")[0] if "/" in wname else layer_name
                weights.setdefault(owner, []).append(np.asarray(group[wname]))
    return weights


def read_weight_shapes(path):
    """{layer name: [weight shapes]} of a named-layout file, read without the data."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weight file {path} does not exist; check the path.")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsLayoutError(f"{path} is not a readable HDF5 weight file ({e}); "
                                 "download it again.") from e
    shapes = OrderedDict()
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        for layer_name in (_decode(n) for n in root.attrs.get("layer_names", [])):
            group = root[layer_name]
            for wname in (_decode(n) for n in group.attrs.get("weight_names", [])):
                owner = wname.split("/")[0] if "/" in wname else layer_name
                shapes.setdefault(owner, []).append(tuple(group[wname].shape))
    return shapes


def _layout_mismatch(path, file_weights, model):
    """One sentence when the file's pyramid/head sizes differ from the model's, else None."""
    from mrcnn.layout import MATTERPORT, describe_sizes, sizes_in_weights
    in_file = sizes_in_weights({k: [a.shape for a in v] for k, v in file_weights.items()})
    in_model = sizes_in_weights({l.name: [tuple(w.shape) for w in l.weights]
                                 for l in model.layers if l.weights})
    # a head of another kind is no mismatch: PointRend's coarse head is matterport's,
    # so one may start from the other (the missing point head stays as built)
    differ = {k for k in in_file if k in in_model and in_file[k] != in_model[k]
              and k != "MASK_HEAD"}
    if not differ:
        return None
    if all(in_file.get(k) == v for k, v in MATTERPORT.items()):
        return (f"{path} holds matterport's layout ({describe_sizes(in_file)}) but this "
                f"model was built with {describe_sizes(in_model)}; build it with "
                "LAYOUT = \"matterport\" in its Config to load matterport's weights.")
    return (f"{path} was trained with {describe_sizes(in_file)} but this model was built "
            f"with {describe_sizes(in_model)}; set those sizes in the config "
            "(TOP_DOWN_PYRAMID_SIZE, RPN_CONV_DEPTH, FPN_CLASSIF_FC_LAYERS_SIZE, "
            "MASK_HEAD_CONVS, MASK_HEAD_DEPTH) to load it.")


def save_weights_by_name(model, path):
    """Writes the model's weights in the named layout, atomically (umask permissions)."""
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        names = [l.name for l in model.layers if l.weights]
        f.attrs["layer_names"] = [n.encode("utf8") for n in names]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["format"] = b"mrcnn-named-v1"
        for layer in model.layers:
            if not layer.weights:
                continue
            g = f.create_group(layer.name)
            wnames = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            g.attrs["weight_names"] = [n.encode("utf8") for n in wnames]
            for n, w in zip(wnames, layer.weights):
                g.create_dataset(n, data=np.asarray(w.numpy()))
    return path


def load_weights_by_name(model, path, exclude=None, strict=False):
    """Loads a named-layout file into the model's layers of the same names.

    exclude: layer names to leave untouched. strict: every layer of the model that has
    weights must be in the file (by_name=False semantics for named files).
    Returns a report {"loaded": [...], "skipped": [model layers not in the file],
    "unused": [file layers not in the model]}. Raises WeightsLayoutError listing the
    layers whose shapes differ, with the exclude list that would load the rest.
    """
    exclude = set(exclude or [])
    file_weights = read_named_weights(path)
    report = {"loaded": [], "skipped": [], "unused": []}
    mismatched, assignments = [], []
    model_names = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        model_names.add(layer.name)
        if layer.name in exclude:
            continue
        arrays = file_weights.get(layer.name)
        if arrays is None:
            report["skipped"].append(layer.name)
            continue
        shapes = [tuple(w.shape) for w in layer.weights]
        if len(arrays) != len(shapes) or any(a.shape != s for a, s in zip(arrays, shapes)):
            mismatched.append((layer.name, [a.shape for a in arrays], shapes))
            continue
        assignments.append((layer, arrays))
    if mismatched:
        layout = _layout_mismatch(path, file_weights, model)
        if layout:
            raise SizesMismatch(layout)
        detail = "; ".join(f"{n}: file {fs} vs model {ms}" for n, fs, ms in mismatched[:4])
        names = [n for n, _, _ in mismatched]
        raise WeightsLayoutError(
            f"{path}: {len(mismatched)} layer(s) have other shapes than this model "
            f"({detail}); load with exclude={names} (for a different class count, "
            "exclude mrcnn_class_logits, mrcnn_bbox_fc and mrcnn_mask).")
    if strict and report["skipped"]:
        raise WeightsLayoutError(
            f"{path} lacks {len(report['skipped'])} layer(s) of this model "
            f"(e.g. {report['skipped'][:5]}); load with by_name=True to skip them.")
    for layer, arrays in assignments:
        layer.set_weights(arrays)
        report["loaded"].append(layer.name)
    report["unused"] = sorted(set(file_weights) - model_names - exclude)
    return report

"""mrcnn: a Keras 3 / TensorFlow 2 Mask R-CNN with matterport's API.

matterport's modules (mrcnn.config, mrcnn.model, mrcnn.utils, mrcnn.visualize) are where
they always were; the wings are listed in docs/architecture.md. Modules that moved in
0.2 still import under their old names for one release, with a DeprecationWarning
(docs/changes.md lists them).
"""
import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) hides real messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.2.0"

MOVED = {
    "mrcnn.callback_list": "mrcnn.training.callbacks",
    "mrcnn.callbacks": "mrcnn.training.callbacks",
    "mrcnn.checkpoints": "mrcnn.training.checkpoints",
    "mrcnn.compat": "mrcnn.data.imgaug_compat",
    "mrcnn.config_values": "mrcnn.config_io",
    "mrcnn.curves": "mrcnn.training.curves",
    "mrcnn.ema": "mrcnn.training.ema",
    "mrcnn.evaluation.during_training": "mrcnn.training.evaluation_callback",
    "mrcnn.export.postprocess": "mrcnn.export.results",
    "mrcnn.optimizers": "mrcnn.training.optimizers",
    "mrcnn.precision": "mrcnn.training.precision",
    "mrcnn.report.labels": "mrcnn.report.label_plots",
    "mrcnn.scaled_defaults": "mrcnn.layout",
    "mrcnn.schedules": "mrcnn.training.schedules",
    "mrcnn.weights_io": "mrcnn.weights.by_name",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a moved module under its old name: the new module, and a DeprecationWarning
    naming where it lives now. One instance serves every package that registers moves."""

    def __init__(self):
        self.moves = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.moves:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = self.moves[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there (the old name "
                      "goes away in the next release).", DeprecationWarning, stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module):
        """The module was executed under its new name already."""


def register_moves(moves):
    """Let each old dotted name in `moves` ({old: new}) import as its new module."""
    finder = next((f for f in sys.meta_path if isinstance(f, MovedModules)), None)
    if finder is None:
        finder = MovedModules()
        sys.meta_path.append(finder)
    finder.moves.update(moves)


register_moves(MOVED)

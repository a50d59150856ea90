"""fashion: the application (iMaterialist / Fashionpedia / DeepFashion2 data, the CLI,
the Kaggle metric and submissions, remote runs and serving) built on the mrcnn library.

Modules that moved in 0.2 still import under their old names for one release, with a
DeprecationWarning (docs/changes.md lists them).
"""
from mrcnn import register_moves

MOVED = {
    "fashion.data_sources": "fashion.data.sources",
    "fashion.dataset": "fashion.data.fashion_dataset",
    "fashion.demo_data": "fashion.data.demo_data",
    "fashion.demo_figures": "fashion.data.demo_figures",
    "fashion.demo_hard": "fashion.data.demo_hard",
    "fashion.detections": "fashion.inference.outputs",
    "fashion.detector": "fashion.inference.detector",
    "fashion.export_eval": "fashion.commands.export_eval",
    "fashion.groundtruth": "fashion.data.fashion_dataset",  # gt_coco
    "fashion.labels": "fashion.data.labels",
    "fashion.postprocess": "fashion.inference.postprocess",
    "fashion.records": "fashion.data.shards",
    "fashion.reports": "fashion.commands.reports",
    "fashion.rle": "fashion.data.rle",
    "fashion.runs": "fashion.run",
    "fashion.train_eval": "fashion.commands.train_eval",
    "fashion.tta": "fashion.inference.tta",
    "fashion.tuning": "fashion.inference.tuning",
}

register_moves(MOVED)

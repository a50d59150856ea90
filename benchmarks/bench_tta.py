"""Test-time augmentation on the demo val split: segm AP / AP50, bbox AP, the
iMaterialist 2019 score and time per image, for each --tta setting.

    python fashion/fashion.py demo                       # a trained demo model first
    python benchmarks/bench_tta.py --weights logs/fashion*/mask_rcnn_fashion_0006.h5 \
        --demo-dir data/demo --tta none flip 0.8,1.0,1.2,flip

Settings are what `evaluate --tta ...` applies (fashion/inference/tta.py: views merged by mask
voting); "none" is plain detect(). DETECTION_MIN_CONFIDENCE is 0.05 as in evaluate;
the iMaterialist score counts predictions scoring >= 0.5 (evaluate's default).
Time per image is CPU process time (2 threads), robust to other load on the machine.
"""
import argparse
import time

import common  # noqa: F401  (puts the repo root on sys.path)


def evaluate_setting(args, spec):
    """(metrics dict, seconds of CPU per image) of one --tta setting."""
    from fashion.cli_args import command_args
    from fashion.commands import evaluate
    from fashion.data.sources import dataset_from_args
    from fashion.inference.outputs import to_records
    from fashion.run import detector_from_args
    from mrcnn.evaluation.groundtruth import dataset_ground_truth
    from fashion.imat_metric import evaluate_imat
    from mrcnn.evaluation import evaluate_coco
    ns = command_args(evaluate, dataset="demo", demo_dir=args.demo_dir,
                      demo_images=args.demo_images, weights=args.weights, logs=args.logs,
                      tta=None if spec == "none" else spec, postprocess="none",
                      limit=args.limit)
    detector, run = detector_from_args(ns)
    meta = run.meta
    dataset, _, _ = dataset_from_args(
        ns, "val", image_size=int(detector.model.config.IMAGE_MAX_DIM))
    gt = dataset_ground_truth(dataset, category_ids=dataset.category_ids)
    detector(dataset.load_image(dataset.image_ids[0]))            # build / trace first
    predictions, cpu = [], 0.0
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        t0 = time.process_time()
        result = detector(image)
        cpu += time.process_time() - t0
        predictions += to_records(result, int(image_id), str(image_id), meta,
                                  len(predictions) + 1)
    coco = evaluate_coco(gt, predictions, iou_types=("segm", "bbox"), per_class=False)
    imat = evaluate_imat(gt, predictions, iou_type="segm", min_score=0.5)["score"]
    return {"segm AP": coco["segm"]["AP"], "segm AP50": coco["segm"]["AP50"],
            "bbox AP": coco["bbox"]["AP"], "iMat2019": imat,
            "views": 1 if detector.views is None else
            len(detector.views[0]) * (2 if detector.views[1] else 1),
            "images": len(dataset.image_ids)}, cpu / len(dataset.image_ids)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--logs", default="logs")
    p.add_argument("--demo-dir", default="data/demo")
    p.add_argument("--demo-images", type=int, default=300)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--tta", nargs="+", default=["none", "flip", "0.8,1.0,1.2,flip"])
    args = p.parse_args()
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(2)
    rows = [(spec,) + evaluate_setting(args, spec) for spec in args.tta]
    print(f"\n{'--tta':<20}{'views':>6}{'segm AP':>9}{'AP50':>8}{'bbox AP':>9}"
          f"{'iMat2019':>10}{'CPU s/img':>11}")
    for spec, m, sec in rows:
        print(f"{spec:<20}{m['views']:>6}{m['segm AP']:>9.4f}{m['segm AP50']:>8.4f}"
              f"{m['bbox AP']:>9.4f}{m['iMat2019']:>10.4f}{sec:>11.3f}")
    print(f"({rows[0][1]['images']} val images)")


if __name__ == "__main__":
    main()

"""The run report: pictures and tables people look at when a run goes wrong, and one
static page linking them.

- label_plots.py: label statistics of the training data -> labels.png.
- batches.py: the first training batches from the real tf.data pipeline ->
  train_batches.png.
- evaluation.py: after an evaluation -> confusion_matrix.png,
  confusion_matrix_normalized.png, mask_PR.png, mask_F1.png, val_pred_<epoch>.png and,
  with attributes, attribute_precision_recall.csv / .png.
- html.py: report.html linking all of it, the training curve, the config, the best
  epoch and the final metrics (regenerated after every epoch by ReportPage).
- plots.py: the drawing (matplotlib's Agg canvas; files written atomically).

The numbers come from mrcnn.evaluation.confusion and mrcnn.evaluation.thresholds.
"""

"""Where the fashion data comes from: the competition formats (FashionDataset), the
annotation-tool exports people label their own photos with (COCO from CVAT / Label Studio /
Roboflow, VIA, labelme) and recognising a format from its files, RLE, label sets, data
sources named by --dataset, the synthetic demo sets and TFRecord shards.
"""

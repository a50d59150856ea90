"""Where the fashion data comes from: the competition formats (FashionDataset), RLE,
label sets, data sources named by --dataset, the synthetic demo sets and TFRecord shards.
"""

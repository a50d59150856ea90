"""matterport's COCO sample: CocoDataset and the train / evaluate commands."""

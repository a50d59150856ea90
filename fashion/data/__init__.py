"""Data loaders: the annotation-tool exports people label their own photos with (COCO
from CVAT / Label Studio / Roboflow, VIA, labelme) and recognising a format from its files."""

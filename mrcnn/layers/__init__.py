"""Graph layers of Mask R-CNN: proposals, ROI align, detection targets, detections, and
the small glue layers of the graph builders (graph_utils)."""

from mrcnn.layers.detection_targets import DetectionTargetLayer
from mrcnn.layers.detections import DetectionLayer, refine_detections
from mrcnn.layers.graph_utils import (ActiveClassIds, ConstantAnchors, GatherRois, NormBoxes,
                                      PadRows, PositiveRows, ValidDetectionBoxes)
from mrcnn.layers.proposals import ProposalLayer
from mrcnn.layers.roi_align import PyramidROIAlign, roi_pyramid_levels

__all__ = [
    "ActiveClassIds",
    "ConstantAnchors",
    "DetectionLayer",
    "DetectionTargetLayer",
    "GatherRois",
    "NormBoxes",
    "PadRows",
    "PositiveRows",
    "ProposalLayer",
    "PyramidROIAlign",
    "refine_detections",
    "roi_pyramid_levels",
    "ValidDetectionBoxes",
]

"""Graph layers of Mask R-CNN: proposals, ROI align, detection targets, detections."""

from mrcnn.layers.detection_targets import DetectionTargetLayer
from mrcnn.layers.detections import DetectionLayer, refine_detections
from mrcnn.layers.proposals import ProposalLayer
from mrcnn.layers.roi_align import PyramidROIAlign, roi_pyramid_levels

__all__ = [
    "DetectionLayer",
    "DetectionTargetLayer",
    "ProposalLayer",
    "PyramidROIAlign",
    "refine_detections",
    "roi_pyramid_levels",
]

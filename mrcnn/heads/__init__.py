"""The heads on the pyramid features: RPN, box (classifier + regression), mask and
attributes; each takes pyramid features or pooled ROIs and names its layers as matterport."""

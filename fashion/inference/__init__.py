"""What detect, evaluate, tune and serve run per image: the detector, post-processing a
run can store and tune, test-time augmentation, and the outputs (records, overlays).
"""

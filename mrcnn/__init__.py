"""mrcnn: a Keras 3 / TensorFlow 2 Mask R-CNN with matterport's API."""
import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU features) hides real messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

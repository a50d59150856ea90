"""A switch for graphs traced to be converted (ONNX, OpenVINO): inside ``portable()``
graph code picks formulations that converters and other runtimes run fast and that
give the same numbers, e.g. ROI align from gathers instead of CropAndResize (which
tf2onnx turns into a loop over boxes) and no per-image loop around NMS for one image.

    with portable():
        concrete = tf.function(fn).get_concrete_function(spec)   # traced portable

Only tracing reads the switch; Keras models and detect() are untouched by it.
"""
import contextlib
import threading

_STATE = threading.local()


@contextlib.contextmanager
def portable(enabled=True):
    """Traces inside this block use the portable formulations."""
    previous = getattr(_STATE, "on", False)
    _STATE.on = bool(enabled)
    try:
        yield
    finally:
        _STATE.on = previous


def is_portable():
    """True while tracing inside ``portable()``."""
    return getattr(_STATE, "on", False)

"""Pure functions on tensors and arrays: boxes, anchors, training targets, and the
portable variants the ONNX export traces; each tested against a numpy reference."""

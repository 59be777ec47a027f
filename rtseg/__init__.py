"""rtseg: real-time semantic segmentation of video.

Importing this package is cheap on purpose: no torch, no Qt, no ONNX Runtime,
no OpenVINO and no TensorRT are imported here. Each layer imports its heavy
framework lazily, at the point of use.
"""

__version__ = "0.1.0"

"""Inference backends. This package never imports Qt, and imports each
framework (torch, onnxruntime, openvino, tensorrt) only when that backend is
created."""

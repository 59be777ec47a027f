"""ONNX export and checks; TensorRT engine build (tensorrt imported lazily)."""

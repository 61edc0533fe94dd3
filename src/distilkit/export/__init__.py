"""Deployment exports (ONNX) and the onnxruntime helpers that run them."""

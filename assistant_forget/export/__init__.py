"""What the app loads: ONNX / CoreML conversion, the cached ONNX graph, atomic publication, the torch-free runtime."""

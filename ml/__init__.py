"""The ML lifecycle: tenancy-aware training, registry, ONNX scoring, drift statistics."""

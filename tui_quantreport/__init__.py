"""tui-quantreport: module-by-module quantization advice for PyTorch models."""

__version__ = "0.1.0"

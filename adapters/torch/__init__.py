"""PyTorch adapters."""

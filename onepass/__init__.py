"""One-pass SGD."""

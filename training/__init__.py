"""Grin's training pipeline: datasets, splits, architectures, training runs and evaluation."""

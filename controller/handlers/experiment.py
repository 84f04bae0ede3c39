"""Experiment wiring (the reconciler lands with the Experiments issue)."""

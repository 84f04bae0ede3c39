"""Track wiring (the reconciler lands with the Track issue)."""

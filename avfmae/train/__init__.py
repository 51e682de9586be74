"""Training core: losses, optimisation, mixed precision, checkpoints, distributed helpers."""

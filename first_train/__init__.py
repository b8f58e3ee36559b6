"""first_train — FIRST: fine-tuning, the top-k teacher store, trustworthy maximization
(temperature re-shaping chosen for the lowest ECE) and distillation, on Accelerate."""

__version__ = "0.1.0"

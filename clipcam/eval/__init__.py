"""Evaluation: the shapes world (scenes with ground-truth masks), the metrics that score a heatmap
against them, and the evaluation pipeline (its class-agnostic baseline is the attention rollout
method, clipcam.methods.rollout)."""

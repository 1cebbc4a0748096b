"""Evaluation: the shapes world (scenes with ground-truth masks), the metrics that score a heatmap
against them, and the class-agnostic rollout baseline."""

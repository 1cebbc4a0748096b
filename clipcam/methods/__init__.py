"""Explanation methods: the Grad-CAM family, Score-CAM and the attention methods, one module each."""

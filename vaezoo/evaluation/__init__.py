"""Measuring a trained model: held-out bounds and measures, and pictures."""

"""Gradient-based unlearning: a config + a forget loss + a retain loss over the one training loop."""

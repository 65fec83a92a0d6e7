"""Unlearning methods. Each is registered by name in :mod:`expunge.methods.registry`."""

"""Gradient-based unlearning: a config + a forget term + a retain term over the one training loop.

One file per method (config with the paper link, preparation, terms, registration):
``grad_ascent``, ``grad_diff``, ``npo``, ``simnpo``, ``rmu``, ``idkft``; ``base`` holds what they
share and ``losses`` the loss functions as pure functions of tensors. The registry
(:mod:`expunge.methods.registry`) imports each method file once.
"""

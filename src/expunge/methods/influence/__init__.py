"""Influence functions (Grosse et al. 2023, https://arxiv.org/abs/2308.03296) with kronfluence's
EK-FAC: ``factors`` fits and caches the curvature per model weights, ``attribution`` ranks training
documents by influence on a query (``expunge attribute``), and ``removal`` is the registered
unlearning method ``influence``, a preconditioned Newton step away from the forget documents.

kronfluence is optional (``pip install 'expunge[influence]'``); without it the method and the
command refuse with one line naming the extra, and nothing else is affected.
"""

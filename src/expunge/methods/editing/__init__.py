"""Model editing: rewrite the weights that hold a fact (ROME for one, MEMIT for thousands), reversibly.

common.py (lookup positions, keys, the shared value step, EditResult / revert), stats.py
(second-moment statistics, cached), rome.py, memit.py, run.py (``expunge edit``: a new model
version with an exact revert file), compare.py (editors and retrieval side by side).
"""

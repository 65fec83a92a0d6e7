"""Model editing: rewrite the weights that hold a fact (ROME; MEMIT to come), reversibly."""

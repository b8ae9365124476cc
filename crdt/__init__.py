"""Meshpad core: documents, causal delivery, protocols and the storage port. Sans-IO."""

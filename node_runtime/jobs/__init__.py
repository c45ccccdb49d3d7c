"""Background jobs of the node: push delivery (with circuit breakers) and retention."""

"""Where tenant (Gemeente) resources come from: files (local mode) or the Kubernetes API."""

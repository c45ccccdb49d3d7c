"""What the node serves now: its compiled configuration, who is who, where gemeenten come from."""

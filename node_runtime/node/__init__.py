"""The node process: settings, the state it serves, who is who, and how it is assembled."""

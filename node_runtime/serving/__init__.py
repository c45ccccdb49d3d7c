"""Running our HTTPS apps: the mutual-TLS listener, the plain health port, TLS reloads."""

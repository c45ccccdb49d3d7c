"""The node's HTTP API: app factory, dependencies, routes and the servers that run it."""

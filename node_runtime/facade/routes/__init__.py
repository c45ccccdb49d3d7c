"""The façade's HTTP routes, one module per resource."""

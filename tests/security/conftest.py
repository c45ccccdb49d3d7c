"""The security suites reuse the façade world (two nodes and a façade over mutual TLS)."""

from tests.facade.conftest import facade_pki, world

__all__ = ["facade_pki", "world"]

"""The municipal cloud façade: one uniform interface for a gemeente across all knooppunten.

A gemeente connects once — one certificate, one base URL, one API — however many nodes serve
it. See docs/facade.md.
"""

from node_runtime.facade.app import create_facade_app
from node_runtime.facade.assembly import Facade, build_facade
from node_runtime.facade.config import FacadeSettings
from node_runtime.facade.server import RunningFacade, serve_facade, start_facade_in_thread

__all__ = [
    "Facade",
    "FacadeSettings",
    "RunningFacade",
    "build_facade",
    "create_facade_app",
    "serve_facade",
    "start_facade_in_thread",
]

"""Knooppunt node runtime: intake, validation, conversion, routing, doelbinding, mailbox."""

__version__ = "0.1.0"

"""The portal's pages, one module per page (or pair of pages)."""

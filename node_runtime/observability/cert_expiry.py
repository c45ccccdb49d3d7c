"""When the node's own certificates run out: read from the files in force, cached by mtime.

The files are rotated in place (cert-manager, the operator), so each scrape looks at the file
as it is now; parsing happens only when its modification time changed.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

_cache: dict[Path, tuple[float, float]] = {}


def not_after(path: Path) -> float | None:
    """The leaf certificate's notAfter (Unix seconds) of a PEM chain; None if unreadable."""
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    hit = _cache.get(path)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    try:
        leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return None
    value = leaf.not_valid_after_utc.timestamp()
    _cache[path] = (mtime, value)
    return value

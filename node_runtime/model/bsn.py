"""The burgerservicenummer (BSN): the one check every part of the system applies to it."""

from __future__ import annotations


def elfproef(value: str) -> bool:
    """The BSN 11-proof: 9 digits, sum(d_i * (9..2)) - d_9 divisible by 11, not all zero."""
    if len(value) != 9 or not value.isdigit() or value == "000000000":
        return False
    digits = [int(c) for c in value]
    total = sum(d * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True)) - digits[8]
    return total % 11 == 0

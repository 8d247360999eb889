"""Kubernetes resource quantities (`500m`, `8`, `16Gi`, `1.5G`) as plain numbers."""

from __future__ import annotations

_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_UNITS |= {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "m": 1e-3}


def parse_quantity(value: str | float) -> float:
    """CPUs, or bytes for memory and storage: the binary (Ki, Mi, Gi…) and decimal (k, M, G…)
    suffixes and milli (m) of Kubernetes' quantity format."""
    text = str(value).strip()
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _UNITS[suffix]
    return float(text)


__all__ = ["parse_quantity"]

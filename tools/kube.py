"""Kubernetes helpers (the only module importing the ``kubernetes`` package).

The daemon never writes to a cluster; it only needs Kubernetes' own reading of resource
quantities (``4``, ``500m``, ``16Gi``) to compare resource requests across Git history.
"""

from __future__ import annotations

from typing import Any

from kubernetes.utils.quantity import parse_quantity


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity (``4``, ``500m``, ``16Gi``, an int) as a number; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(parse_quantity(value))  # type: ignore[no-untyped-call]  # kubernetes ships no annotations
    except (ValueError, TypeError, ArithmeticError):
        return None

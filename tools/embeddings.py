"""Embedding samples for drift tests: ``<uri>/reference/<modality>.npy`` and
``<uri>/current/<modality>.npy`` (or ``.parquet``: one row per sample, one numeric column per
coordinate; needs pyarrow), on a local path or any fsspec URL (s3://, gs://, https:// ...).
NPY files are read without pickle; a file above ``max_bytes`` is refused."""

from __future__ import annotations

import io

import fsspec
import numpy as np

from tools.errors import PermanentError, TemporaryError

__all__ = ["EmbeddingFiles"]


class EmbeddingFiles:
    name = "embedding files"

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes

    def load(self, *, uri: str, which: str, modality: str) -> np.ndarray:
        """The ``which`` ("reference" / "current") sample of ``modality``: a 2-D float array."""
        base = uri.rstrip("/")
        errors = []
        for ext in ("npy", "parquet"):
            path = f"{base}/{which}/{modality}.{ext}"
            try:
                fs, p = fsspec.core.url_to_fs(path)
                if not fs.exists(p):
                    errors.append(path)
                    continue
                size = fs.size(p) or 0
                if size > self.max_bytes:
                    raise PermanentError(f"{path}: {size} bytes, above the {self.max_bytes} byte limit", source=path)
                with fs.open(p, "rb") as f:
                    data = f.read()
            except (OSError, ValueError, ImportError) as e:
                raise TemporaryError(f"{path}: cannot read ({type(e).__name__}: {e})", source=path) from None
            return _parse(data, ext, path)
        raise PermanentError(f"no embedding sample at {' or '.join(errors)}", source=base)


def _parse(data: bytes, ext: str, path: str) -> np.ndarray:
    try:
        if ext == "npy":
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise PermanentError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow), or store NPY",
                                     source=path) from None
            table = pq.read_table(io.BytesIO(data))
            arr = np.column_stack([np.asarray(c.to_numpy(), dtype=np.float64) for c in table.columns])
    except PermanentError:
        raise
    except Exception as e:   # noqa: BLE001 - numpy / pyarrow raise many types on a corrupt file
        raise PermanentError(f"{path}: not a readable {ext.upper()} array ({type(e).__name__}: {e})", source=path) from None
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1 or not np.issubdtype(arr.dtype, np.number):
        raise PermanentError(f"{path}: expected a numeric (rows, width) array with at least 2 rows, got shape "
                             f"{arr.shape} of {arr.dtype}", source=path)
    if not np.isfinite(arr).all():
        raise PermanentError(f"{path}: holds NaN or infinite values", source=path)
    return arr.astype(np.float32)

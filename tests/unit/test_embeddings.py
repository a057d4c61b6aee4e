"""tools/embeddings.py on real files: NPY samples read without pickle; a missing, corrupt,
oversized, non-numeric or non-finite sample is refused with a line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tools.embeddings import EmbeddingFiles
from tools.errors import PermanentError


def write(root: Path, which: str, modality: str, data: object) -> Path:
    (root / which).mkdir(parents=True, exist_ok=True)
    path = root / which / f"{modality}.npy"
    np.save(path, data, allow_pickle=True)
    return path


def test_a_sample_is_read_as_a_float_matrix_from_a_path_or_a_file_url(tmp_path: Path) -> None:
    write(tmp_path, "reference", "image", np.arange(12, dtype=np.float64).reshape(4, 3))
    files = EmbeddingFiles()
    a = files.load(uri=str(tmp_path), which="reference", modality="image")
    assert a.dtype == np.float32 and a.shape == (4, 3) and a[3, 2] == 11
    assert files.load(uri=f"file://{tmp_path}", which="reference", modality="image").shape == (4, 3)


def test_bad_samples_are_refused_naming_the_file(tmp_path: Path) -> None:
    files = EmbeddingFiles(max_bytes=10_000)
    with pytest.raises(PermanentError, match=r"no embedding sample at .*/current/text\.npy or .*/current/text\.parquet"):
        files.load(uri=str(tmp_path), which="current", modality="text")
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "text.npy").write_bytes(b"not numpy at all")
    with pytest.raises(PermanentError, match=r"current/text\.npy: not a readable NPY array"):
        files.load(uri=str(tmp_path), which="current", modality="text")
    write(tmp_path, "current", "objects", np.array([{"a": 1}, {"b": 2}], dtype=object))   # pickle: refused
    with pytest.raises(PermanentError, match=r"objects\.npy: not a readable NPY array"):
        files.load(uri=str(tmp_path), which="current", modality="objects")
    write(tmp_path, "current", "flat", np.zeros(5))
    with pytest.raises(PermanentError, match=r"flat\.npy: expected a numeric \(rows, width\) array .* shape \(5,\)"):
        files.load(uri=str(tmp_path), which="current", modality="flat")
    write(tmp_path, "current", "nan", np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(PermanentError, match=r"nan\.npy: holds NaN or infinite values"):
        files.load(uri=str(tmp_path), which="current", modality="nan")
    write(tmp_path, "current", "big", np.zeros((100, 100)))
    with pytest.raises(PermanentError, match=r"big\.npy: 80128 bytes, above the 10000 byte limit"):
        files.load(uri=str(tmp_path), which="current", modality="big")

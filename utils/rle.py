"""The SIIM-ACR competition's run-length encoding of masks.

Format (as in ``train-rle.csv``): space-separated integers in (start, length) pairs. Pixels are numbered in
column-major order (down each column, then left to right). The first start counts from pixel 0; every later
start counts from the end of the previous run. ``"-1"`` means an empty mask. Each CSV row is one annotation,
which can hold several disconnected regions; an image with several annotations has several rows, and its mask is
their union (``decode_union``).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

EMPTY = "-1"


def encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (non-zero = foreground) as the competition's relative, column-major RLE."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode expects a 2-D mask, got shape {mask.shape}")
    flat = np.concatenate([[False], mask.ravel(order="F") != 0, [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])  # run starts and ends (exclusive), alternating
    if edges.size == 0:
        return EMPTY
    starts, ends = edges[0::2], edges[1::2]
    relative_starts = starts - np.concatenate([[0], ends[:-1]])
    pairs = np.stack([relative_starts, ends - starts], axis=1).ravel()
    return " ".join(map(str, pairs))


def parse(rle: str) -> np.ndarray:
    """Return the (relative start, length) pairs of an RLE string as an (n, 2) int64 array.

    Raises ValueError, quoting the offending part, for anything that is not pairs of non-negative integers
    with positive lengths.
    """
    if not isinstance(rle, str):
        raise ValueError(f"RLE must be a string, got {rle!r}")
    text = rle.strip()
    if text in (EMPTY, ""):
        return np.zeros((0, 2), dtype=np.int64)
    tokens = text.split()
    bad = [t for t in tokens if not t.isdigit()]
    if bad:
        raise ValueError(f"RLE {_short(text)!r} contains {bad[0]!r}, which is not a non-negative integer")
    if len(tokens) % 2:
        raise ValueError(f"RLE {_short(text)!r} has {len(tokens)} numbers; it needs (start, length) pairs")
    pairs = np.array(tokens, dtype=np.int64).reshape(-1, 2)
    if np.any(pairs[:, 1] == 0):
        raise ValueError(f"RLE {_short(text)!r} contains a run of length 0")
    return pairs


def decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode an RLE string into a uint8 mask of 0/1 with ``shape`` (rows, columns)."""
    height, width = shape
    pairs = parse(rle)
    flat = np.zeros(height * width, dtype=np.uint8)  # column-major: the competition numbers pixels down columns
    if len(pairs):
        ends = np.cumsum(pairs[:, 0] + pairs[:, 1])
        starts = ends - pairs[:, 1]
        if ends[-1] > height * width:
            raise ValueError(
                f"RLE {_short(rle.strip())!r} runs to pixel {ends[-1]}, past the {height}x{width} image "
                f"({height * width} pixels); is the shape right?"
            )
        for start, end in zip(starts.tolist(), ends.tolist()):  # a few hundred runs: cheaper than a cumsum
            flat[start:end] = 1
    return flat.reshape((width, height)).T


def decode_union(rles: Iterable[str], shape: tuple[int, int]) -> np.ndarray:
    """The union of several RLE rows of one image (an empty iterable or only "-1" gives an empty mask)."""
    mask = np.zeros(shape, dtype=np.uint8)
    for rle in rles:
        mask |= decode(rle, shape)
    return mask


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

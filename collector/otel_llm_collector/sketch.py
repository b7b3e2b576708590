"""A mergeable quantile sketch with a guaranteed relative error (DDSketch-style logarithmic buckets).

A positive value `x` lands in bucket `i = ceil(log(x) / log(gamma))` with `gamma = (1 + a) / (1 - a)`; every
value in bucket `i` lies in `(gamma**(i-1), gamma**i]`, and the bucket answers with
`2 * gamma**i / (gamma + 1)`, which is within a relative error `a` of every value in it. So any quantile
the sketch returns is within `a` (default 1%) of the true value of that rank, whatever the distribution,
as long as no buckets were collapsed (more than `max_buckets` distinct buckets: the lowest are merged, which
only affects the lowest quantiles). Values at or below `min_value` (including zero and negatives, which a
latency never is) are counted in a zero bucket.

Why this and not a t-digest: sketches with the same accuracy merge exactly (bucket counts add), so
per-minute sketches can be summed into any window, persisted and restored without drift.

Buckets live in a dense `array('I')` window `[offset, offset + len)`, which is several times smaller than a
dict of counts and makes `add` a single indexed increment in the common case.

Two serialised forms answer every quantile identically after a round trip: `to_dict` (plain data, for JSON)
and `pack_into` / `unpack_from` (a fixed 60-byte little-endian header, then the counts as `uint32`), which
the window snapshot uses because it costs a few struct calls instead of a list of Python ints per sketch.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from bisect import bisect_right
from itertools import accumulate
from operator import add
from typing import Any, Final

DEFAULT_RELATIVE_ACCURACY: Final = 0.01
DEFAULT_MIN_VALUE: Final = 1e-9
DEFAULT_MAX_BUCKETS: Final = 2048
_TYPECODE: Final = "I"
"""Unsigned 32-bit counts (4 bytes a bucket); buckets of finer time slices never approach 2**32."""
_ITEMSIZE: Final = array(_TYPECODE).itemsize
_PACKED: Final = struct.Struct("<dqIqqddd")
"""relative accuracy, offset, number of bins, zero count, count, sum, min, max; then the bins as `<u4`."""
_RAW_BINS: Final = _ITEMSIZE == 4 and sys.byteorder == "little"
"""Whether `array.tobytes` already is the packed form of the bins (true on every common platform)."""
_PARAMETERS: dict[float, tuple[float, float]] = {}


class QuantileSketch:
    """Counts values in logarithmic buckets; `quantile(q)` is within `relative_accuracy` of the truth."""

    __slots__ = (
        "_bins",
        "_inv_log_gamma",
        "_offset",
        "count",
        "gamma",
        "max",
        "min",
        "relative_accuracy",
        "sum",
        "zero_count",
    )

    def __init__(self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy}")
        params = _PARAMETERS.get(relative_accuracy)
        if params is None:
            gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
            params = _PARAMETERS[relative_accuracy] = (gamma, 1.0 / math.log(gamma))
        self.relative_accuracy = relative_accuracy
        self.gamma, self._inv_log_gamma = params  # shared float objects: sketches are many and small
        self._bins: array[int] = array(_TYPECODE)
        self._offset = 0
        self.zero_count = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add_many(self, values: list[float]) -> None:
        """`add` of each value, in order (the same sum to the bit), with the common case inlined."""
        inv_log_gamma = self._inv_log_gamma
        bins = self._bins
        offset = self._offset
        count, total, low, high = self.count, self.sum, self.min, self.max
        for value in values:
            if not DEFAULT_MIN_VALUE < value < math.inf:
                self.count, self.sum, self.min, self.max = count, total, low, high
                self.add(value)  # zero, negative, NaN or infinite: the general path
                count, total, low, high = self.count, self.sum, self.min, self.max
                continue
            count += 1
            total += value
            if value < low:
                low = value
            if value > high:
                high = value
            index = math.ceil(math.log(value) * inv_log_gamma)
            if 0 <= index - offset < len(bins):
                bins[index - offset] += 1
            else:
                self._grow(index)
                bins = self._bins
                offset = self._offset
                bins[max(index - offset, 0)] += 1
        self.count, self.sum, self.min, self.max = count, total, low, high

    def add(self, value: float, weight: int = 1) -> None:
        """Count `value` (`weight` times). Constant time unless the bucket range must grow.
        NaN and +inf are ignored (they have no bucket); -inf counts as zero."""
        if not value < math.inf:
            return
        self.count += weight
        self.sum += value * weight
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value <= DEFAULT_MIN_VALUE:
            self.zero_count += weight
            return
        index = math.ceil(math.log(value) * self._inv_log_gamma)
        position = index - self._offset
        bins = self._bins
        if 0 <= position < len(bins):
            bins[position] += weight
            return
        self._grow(index)
        self._bins[max(index - self._offset, 0)] += weight  # below the offset: collapsed into the lowest bin

    def _grow(self, index: int) -> None:
        bins = self._bins
        if not bins:
            self._offset = index
            bins.append(0)
            return
        if index < self._offset:
            self._bins = array(_TYPECODE, bytes(_ITEMSIZE * (self._offset - index))) + bins
            self._offset = index
        elif index >= self._offset + len(bins):
            bins.extend(array(_TYPECODE, bytes(_ITEMSIZE * (index - self._offset - len(bins) + 1))))
        else:
            return
        if len(self._bins) > DEFAULT_MAX_BUCKETS:
            self._collapse_lowest()

    def _collapse_lowest(self) -> None:
        excess = len(self._bins) - DEFAULT_MAX_BUCKETS
        merged = sum(self._bins[: excess + 1])
        self._bins = self._bins[excess:]
        self._bins[0] = merged
        self._offset += excess

    def merge(self, other: QuantileSketch) -> None:
        """Add `other`'s counts into this sketch. Both must have the same relative accuracy."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("cannot merge sketches with different relative accuracy")
        if other.count == 0:
            return
        self.count += other.count
        self.sum += other.sum
        self.zero_count += other.zero_count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        theirs = other._bins
        n = len(theirs)
        if not n:
            return
        low = other._offset
        if not self._bins:
            self._bins = array(_TYPECODE, theirs)  # a copy, in C: the common case of a fresh window
            self._offset = low
            return
        start = low - self._offset
        if start < 0 or start + n > len(self._bins):
            self._grow(low)
            self._grow(low + n - 1)
            start = low - self._offset
        bins = self._bins
        if n <= 8:
            for i in range(n):
                if theirs[i]:
                    bins[start + i] += theirs[i]
        else:  # map/add run in C
            bins[start : start + n] = array(_TYPECODE, map(add, bins[start : start + n], theirs))

    def quantile(self, q: float) -> float | None:
        """The value at rank `q` (0..1), or None when the sketch is empty."""
        result = self.quantiles((q,))
        return result[0] if result else None

    def quantiles(self, qs: tuple[float, ...]) -> tuple[float, ...]:
        """Several quantiles in one pass over the buckets; empty when the sketch is empty."""
        if self.count <= 0:
            return ()
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile must be in [0, 1], got {q}")
        cumulative = list(accumulate(self._bins, initial=self.zero_count))
        out: list[float] = []
        for q in qs:
            rank = q * (self.count - 1)
            if rank < self.zero_count:
                out.append(0.0)
                continue
            position = bisect_right(cumulative, rank) - 1  # first bucket whose running total exceeds rank
            if position >= len(self._bins):
                out.append(self.max)
                continue
            value = 2.0 * self.gamma ** (position + self._offset) / (self.gamma + 1.0)
            out.append(min(max(value, self.min), self.max))
        return tuple(out)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def copy(self) -> QuantileSketch:
        clone = QuantileSketch(self.relative_accuracy)
        clone.merge(self)
        return clone

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form; `from_dict(to_dict())` answers every quantile identically."""
        return {
            "a": self.relative_accuracy,
            "o": self._offset,
            "b": self._bins.tolist(),
            "z": self.zero_count,
            "n": self.count,
            "s": self.sum,
            "lo": self.min if self.count else None,
            "hi": self.max if self.count else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileSketch:
        sketch = cls(float(data["a"]))
        sketch._offset = int(data["o"])
        sketch._bins = array(_TYPECODE, (int(w) for w in data["b"]))
        sketch.zero_count = int(data["z"])
        sketch.count = int(data["n"])
        sketch.sum = float(data["s"])
        if data.get("lo") is not None:
            sketch.min = float(data["lo"])
            sketch.max = float(data["hi"])
        return sketch

    def pack_into(self, out: bytearray) -> None:
        """Append the binary form (see the module docstring) to `out`."""
        bins = self._bins
        out += _PACKED.pack(
            self.relative_accuracy,
            self._offset,
            len(bins),
            self.zero_count,
            self.count,
            self.sum,
            self.min,
            self.max,
        )
        out += bins.tobytes() if _RAW_BINS else struct.pack(f"<{len(bins)}I", *bins)

    @classmethod
    def unpack_from(cls, buffer: bytes | memoryview, offset: int) -> tuple[QuantileSketch, int]:
        """The sketch packed at `offset` in `buffer`, and the offset just after it."""
        accuracy, bin_offset, n, zero_count, count, total, low, high = _PACKED.unpack_from(buffer, offset)
        start = offset + _PACKED.size
        end = start + 4 * n
        if end > len(buffer):
            raise ValueError("truncated quantile sketch")
        sketch = cls(accuracy)
        if _RAW_BINS:
            sketch._bins.frombytes(buffer[start:end])
        else:
            sketch._bins.extend(struct.unpack_from(f"<{n}I", buffer, start))
        sketch._offset = bin_offset
        sketch.zero_count = zero_count
        sketch.count = count
        sketch.sum = total
        sketch.min = low
        sketch.max = high
        return sketch, end


__all__ = ["DEFAULT_RELATIVE_ACCURACY", "QuantileSketch"]

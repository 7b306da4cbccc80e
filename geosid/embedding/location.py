"""Location encoding: an item's exact coordinates as a vector, at several scales, and its
fusion with the text embedding into one geo-aware item vector.

Each scale is a wavelength (50 m .. 50 km by default). For every scale, `directions`
plane waves run across the globe: a wave's phase at a point p (on the unit sphere) is
2 pi R <p, w> / wavelength for a fixed unit direction w, so two points d km apart along
the wave differ by 2 pi d / wavelength. The encoding is cos and sin of every phase,
scaled so the whole vector has unit norm; the inner product of two encodings is then
a weighted mean over scales of cos(phase differences), about 1 for points much closer
than a scale's wavelength and about 0 for points much farther. Coarse scales make nearby
items similar (geo-coherent SIDs), fine scales tell apart two venues 100 m apart.

The fused vector is concat(sqrt(1 - w) * text, sqrt(w) * location), unit norm, so its
inner products are (1 - w) * text similarity + w * location similarity. Every parameter
is part of the encoder's id, and so of the model id recorded with each vector.

Shapes: lat, lon [n] degrees -> location [n, 2 * directions * scales] float32;
text [n, d] (unit rows) -> fused [n, d + 2 * directions * scales] float32 (unit rows).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from geosid.geo.geometry import EARTH_RADIUS_KM

DEFAULT_WAVELENGTHS_KM = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


@dataclass(frozen=True)
class LocationEncoder:
    """Multi-scale plane-wave features of a point on the sphere (see the module doc)."""

    wavelengths_km: tuple[float, ...] = DEFAULT_WAVELENGTHS_KM
    directions: int = 8  # plane waves per scale
    scale_weights: tuple[float, ...] | None = None  # share of each scale (default: equal)
    weight: float = 0.5  # share of the fused vector's squared norm given to location
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"the location weight must be in [0, 1], got {self.weight}")
        if self.scale_weights is not None and len(self.scale_weights) != len(self.wavelengths_km):
            raise ValueError(f"{len(self.scale_weights)} scale weights for {len(self.wavelengths_km)} wavelengths")
        if min(self.wavelengths_km) <= 0 or self.directions < 1:
            raise ValueError("wavelengths must be positive and directions at least 1")

    @property
    def dim(self) -> int:
        return 2 * self.directions * len(self.wavelengths_km)

    def params(self) -> dict:
        return {"kind": "plane-waves-v1", **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}

    @property
    def encoder_id(self) -> str:
        """`loc-<hash of params>`: changes whenever any parameter does."""
        return "loc-" + hashlib.sha256(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()[:10]

    def _waves(self) -> tuple[np.ndarray, np.ndarray]:
        """(unit directions [S, K, 3], per-scale amplitudes [S]) from the seed."""
        rng = np.random.default_rng(self.seed)
        w = rng.normal(size=(len(self.wavelengths_km), self.directions, 3))
        w /= np.linalg.norm(w, axis=-1, keepdims=True)
        shares = np.asarray(self.scale_weights if self.scale_weights is not None else [1.0] * len(self.wavelengths_km), np.float64)
        shares = shares / shares.sum()
        return w, np.sqrt(shares / self.directions)  # each scale's K waves (cos, sin) carry its share of the norm

    def encode(self, lat, lon) -> np.ndarray:
        """[n] degrees -> [n, dim] float32, unit rows."""
        lat, lon = np.radians(np.asarray(lat, np.float64)), np.radians(np.asarray(lon, np.float64))
        assert lat.shape == lon.shape and lat.ndim == 1, f"lat {lat.shape} and lon {lon.shape} must be [n]"
        p = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)  # [n, 3]
        directions, amplitude = self._waves()
        wavelengths = np.asarray(self.wavelengths_km, np.float64)
        phase = 2 * np.pi * EARTH_RADIUS_KM * np.einsum("nc,skc->nsk", p, directions) / wavelengths[None, :, None]  # [n, S, K]
        features = np.concatenate([np.cos(phase), np.sin(phase)], axis=2) * amplitude[None, :, None]  # [n, S, 2K]
        return features.reshape(len(p), -1).astype(np.float32)

    def fuse(self, text: np.ndarray, lat, lon) -> np.ndarray:
        """concat(sqrt(1 - w) text, sqrt(w) location) -> [n, d + dim] float32, unit rows."""
        text = np.asarray(text, np.float32)
        assert text.ndim == 2 and len(text) == len(np.asarray(lat)), f"text {text.shape} for {len(np.asarray(lat))} locations"
        norms = np.linalg.norm(text, axis=1, keepdims=True)
        text = text / np.maximum(norms, 1e-12)
        fused = np.concatenate([np.sqrt(1 - self.weight) * text, np.sqrt(self.weight) * self.encode(lat, lon)], axis=1)
        return fused.astype(np.float32)

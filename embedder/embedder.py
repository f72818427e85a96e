"""Embedder: a loaded bundle ready to turn images into vectors (the service's one entry point)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from embedder.bundle import load_bundle
from embedder.config import BundleConfig
from embedder.inference import pick_device, run_model
from embedder.model import EmbeddingModel
from embedder.paths import BASELINE_BUNDLE, default_bundle_path
from embedder.preprocess import image_to_tensor

__all__ = ["BASELINE_BUNDLE", "Embedder", "default_bundle_path"]


@dataclass
class Embedder:
    """One bundle's model plus its preprocessing; `bundle_id` names the vector space."""

    bundle_id: str
    name: str
    dim: int
    config: BundleConfig
    model: EmbeddingModel = field(repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 64

    @classmethod
    def from_bundle(cls, path: str | Path, device: str | None = None) -> Embedder:
        """Load a bundle directory; device None/"auto" picks CUDA when available."""
        model, config, bundle_id = load_bundle(path)
        dev = pick_device(device)
        model.to(dev).eval()
        return cls(bundle_id, config.name, model.dim, config, model, dev)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Float CHW in [0, 1] at the bundle's input size; pure, so safe from many threads."""
        pre = self.config.preprocess
        return image_to_tensor(image, size=pre.input_size, crop_border=pre.crop_black_border)

    def embed_tensors(self, batch: torch.Tensor) -> np.ndarray:
        """(n, 3, H, W) preprocessed batch -> (n, dim) float32 unit vectors."""
        return run_model(self.model, batch, device=self.device, batch_size=self.batch_size)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Preprocess and embed PIL images in one batched pass."""
        if len(images) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return self.embed_tensors(torch.stack([self.preprocess(im) for im in images]))

    def info(self) -> dict[str, Any]:
        """What the service shows about the active model (name, id, dim, licences, metrics)."""
        return {
            "name": self.name,
            "id": self.bundle_id,
            "dim": self.dim,
            "input_size": self.config.preprocess.input_size,
            "branches": [
                {"name": b.name, "kind": b.kind, "preset": b.preset, "arch": b.arch}
                for b in self.config.branches
            ],
            "licences": [n.model_dump() for n in self.config.licences()],
            "metrics": dict(self.config.metrics),
            "device": str(self.device),
        }

"""The models the benchmarks run: the shipped baseline, or ViT bundles with random weights.

A ViT's forward cost does not depend on its weight values, so random-init bundles of the real
architectures (built offline, no weight files needed) time exactly what trained ones would.
"""

from __future__ import annotations

from pathlib import Path

import torch

from embedder import create_model, default_bundle_path, model_config, save_bundle

PRESETS = {"vits": "dinov2-vits14-reg4", "dual": "dual-dinov2-gastronet"}
MODELS = ("baseline", *PRESETS)
LABELS = {
    "baseline": "baseline-colour-texture (shipped bundle)",
    "vits": "DINOv2 ViT-S/14-reg4 (random weights)",
    "dual": "dual DINOv2 + GastroNet ViT-S, 512-d head (random weights)",
}


def bench_bundle(kind: str, out: Path, seed: int = 0) -> Path:
    """A bundle directory for `kind` (see MODELS); `seed` makes a ViT bundle (and id) unique."""
    if kind == "baseline":
        return default_bundle_path()
    torch.manual_seed(seed)
    cfg = model_config(PRESETS[kind])
    save_bundle(create_model(cfg).eval(), cfg, out)
    return out

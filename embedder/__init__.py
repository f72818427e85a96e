"""The model, its bundles and preprocessing: from an endoscopy photo to a unit vector.

The public names load on first use (PEP 562), so `import embedder` costs nothing and a
process only pays for torch (about 3 s) or timm (about 2 s more) when it touches a model.
LoRA lives in `embedder.lora` (imports peft, ~1 s) so serving does not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedder.bundle import load_bundle, read_config, save_bundle
    from embedder.config import BranchConfig, BundleConfig, FusionConfig, LoraSettings
    from embedder.embedder import Embedder
    from embedder.errors import ImageDecodeError, WeightLoadError
    from embedder.model import EmbeddingModel, create_model
    from embedder.paths import default_bundle_path
    from embedder.preprocess import crop_black_border, decode_image, image_to_tensor, sniff_mime
    from embedder.presets import BRANCH_PRESETS, MODEL_PRESETS, branch_config, model_config

# public name -> the submodule that defines it
_EXPORTS = {
    "load_bundle": "bundle",
    "read_config": "bundle",
    "save_bundle": "bundle",
    "BranchConfig": "config",
    "BundleConfig": "config",
    "FusionConfig": "config",
    "LoraSettings": "config",
    "Embedder": "embedder",
    "ImageDecodeError": "errors",
    "WeightLoadError": "errors",
    "EmbeddingModel": "model",
    "create_model": "model",
    "default_bundle_path": "paths",
    "crop_black_border": "preprocess",
    "decode_image": "preprocess",
    "image_to_tensor": "preprocess",
    "sniff_mime": "preprocess",
    "BRANCH_PRESETS": "presets",
    "MODEL_PRESETS": "presets",
    "branch_config": "presets",
    "model_config": "presets",
}

__all__ = [
    "BRANCH_PRESETS",
    "MODEL_PRESETS",
    "BranchConfig",
    "BundleConfig",
    "Embedder",
    "EmbeddingModel",
    "FusionConfig",
    "ImageDecodeError",
    "LoraSettings",
    "WeightLoadError",
    "branch_config",
    "create_model",
    "crop_black_border",
    "decode_image",
    "default_bundle_path",
    "image_to_tensor",
    "load_bundle",
    "model_config",
    "read_config",
    "save_bundle",
    "sniff_mime",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines `name` on first access and cache the value here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'embedder' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"embedder.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

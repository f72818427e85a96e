"""Synthetic landmark data embedded once per session with the real baseline embedder.

Three generated classes stand in for the upper-GI landmarks (renamed to their labels) and
two more play photos of classes the gallery lacks. The baseline colour/texture descriptor
separates these three classes best among the generated ones (measured: held-out kNN accuracy
about 0.95 on them, against about 0.37 1-NN accuracy over all ten classes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from embedder import Embedder, default_bundle_path
from tests.app.documentation.service_support import (
    Photos,
    Service,
    add_gallery,
    calibrate,
    make_photos,
    running_service,
)
from training.synthetic import generate_dataset

STAND_INS = {
    "synthetic-dyed": "z-line",
    "synthetic-bleeding": "pylorus",
    "synthetic-z-line": "retroflex-stomach",
}
OUTSIDE = ("synthetic-folds", "synthetic-retroflex")
N_CLASSES = 10  # the classes above are among the first ten generated ones
SIZE = 128


@dataclass(frozen=True)
class Split:
    """Vectors and labels (landmark labels for stand-ins, synthetic names otherwise)."""

    vectors: np.ndarray
    labels: np.ndarray

    def of(self, *labels: str) -> Split:
        mask = np.isin(self.labels, labels)
        return Split(self.vectors[mask], self.labels[mask])


def _embed(embedder: Embedder, per_class: int, seed: int) -> Split:
    data = generate_dataset(N_CLASSES, per_class, size=SIZE, seed=seed)
    wanted = [(img, name) for img, name in data if name in STAND_INS or name in OUTSIDE]
    vectors = embedder.embed([img for img, _ in wanted])
    labels = np.array([STAND_INS.get(name, name) for _, name in wanted])
    return Split(vectors, labels)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder.from_bundle(default_bundle_path())


@pytest.fixture(scope="session")
def landmark_data(embedder: Embedder) -> dict[str, Split]:
    """Gallery, calibration and test splits from three independent seeds (synthetic data)."""
    return {
        "gallery": _embed(embedder, 20, seed=11).of(*STAND_INS.values()),
        "calibration": _embed(embedder, 20, seed=12),
        "test": _embed(embedder, 20, seed=13),
    }


@pytest.fixture(scope="session")
def bundle_b(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A second weight-free bundle (other histogram bins -> other id and dim) to switch to."""
    from embedder import create_model, model_config, save_bundle

    cfg = model_config("baseline")
    branch = cfg.branches[0]
    params = {**branch.params, "hue_bins": 12, "edge_bins": 6}
    cfg = cfg.model_copy(
        update={
            "name": "baseline-variant-b",
            "branches": [branch.model_copy(update={"params": params})],
        }
    )
    out = tmp_path_factory.mktemp("bundle-b")
    save_bundle(create_model(cfg), cfg, out)
    return out


@pytest.fixture(scope="module")
def photos() -> Photos:
    """Generated procedure and gallery photos (service tests: test_*_api.py)."""
    return make_photos()


@pytest.fixture
def svc(tmp_path: Path, sqlite_url: str, photos: Photos) -> Iterator[Service]:
    """A running service with the reference gallery stored and thresholds calibrated."""
    with running_service(tmp_path, sqlite_url) as service:
        add_gallery(service, photos)
        calibrate(service, photos, service.rt.embedder)
        yield service

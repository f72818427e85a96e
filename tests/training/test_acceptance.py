"""Acceptance: a short CPU run of a tiny dual model beats the untrained model clearly on the
synthetic set, and the exported bundle reproduces its reported numbers. [SYNTHETIC data]"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import AugmentConfig, DataConfig, TrainConfig
from training.data import load_tensors
from training.evaluate import EvalSet, evaluate_bundle, score_model
from training.model_setup import build_trainable
from training.splits_io import load_splits
from training.synthetic import write_class_folders
from training.train import train

CFG = TrainConfig(
    preset="dual-dinov2-gastronet",
    tiny=True,
    random_init=True,
    input_size=48,
    head_dim=64,
    loss="multi-similarity",
    epochs=40,
    steps_per_epoch=8,
    batch_size=32,
    m_per_class=4,
    lr=3e-3,
    head_lr=3e-3,
    amp=False,
    device="cpu",
    augment=AugmentConfig(
        crop_scale=(0.85, 1.0), rotate_degrees=0, brightness=0, contrast=0, saturation=0, hue=0
    ),
    data=DataConfig(val_fraction=0.25, test_fraction=0.25),
)


def _untrained_test_recall1(data: Path) -> float:
    splits = load_splits(data, CFG.data)
    model, config = build_trainable(CFG)  # same seed: the exact starting point of the run
    test = EvalSet(
        gallery=load_tensors(splits.train, config),
        gallery_labels=np.array([r.label for r in splits.train]),
        queries=load_tensors(splits.test, config),
        query_labels=np.array([r.label for r in splits.test]),
    )
    result, _, _ = score_model(model, test, device=torch.device("cpu"))
    return float(result.hits[1].mean())


def test_tiny_dual_model_learns_and_its_bundle_reproduces_the_numbers(tmp_path: Path) -> None:
    data = write_class_folders(tmp_path / "synthetic", n_classes=8, per_class=40, size=48, seed=0)
    result = train(CFG, data, tmp_path / "run")
    history = result.history
    untrained_val = history[0]["val_recall@1"]
    best_val = max(h["val_recall@1"] for h in history)
    assert history[result.best_epoch]["val_recall@1"] == best_val
    assert best_val >= untrained_val + 0.15, history

    untrained_test = _untrained_test_recall1(data)
    trained_test = result.metrics["test_micro"]["recall@1"]
    assert trained_test >= untrained_test + 0.1, (untrained_test, trained_test)

    report = evaluate_bundle(result.bundle_dir, data, baselines=False, n_boot=0, device="cpu")
    again = report["results"][report["model"]]["micro"]
    for name, value in result.metrics["test_micro"].items():
        assert again[name]["value"] == pytest.approx(value, abs=1e-9), name

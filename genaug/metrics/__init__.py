"""Classifier recipe and quality measures of synthetic data."""

from genaug.metrics.classify import (
    accuracy,
    random_affine,
    random_cutout,
    strong_augment,
    train_augmented_classifier,
    train_classifier,
)
from genaug.metrics.quality import (
    class_coverage,
    evaluate,
    fid,
    kid,
    label_fidelity,
    precision_recall,
    tstr,
)

__all__ = [
    "accuracy",
    "class_coverage",
    "evaluate",
    "fid",
    "kid",
    "label_fidelity",
    "precision_recall",
    "random_affine",
    "random_cutout",
    "strong_augment",
    "train_augmented_classifier",
    "train_classifier",
    "tstr",
]

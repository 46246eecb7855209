"""Classifier recipe and quality measures of synthetic data."""

from genaug.metrics.classify import accuracy, train_classifier
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
    "train_classifier",
    "tstr",
]

"""Classifier recipe and quality measures."""

from genaug.metrics.classify import accuracy, train_classifier

__all__ = ["accuracy", "train_classifier"]

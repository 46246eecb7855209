"""Transforms that mix synthetic samples into real data (per sample and per batch).

The albumentations adapter lives in :mod:`genaug.transforms.albumentations` (optional extra).
"""

from genaug.transforms.replace import SyntheticBatchMix, SyntheticReplace, match_like

__all__ = ["SyntheticBatchMix", "SyntheticReplace", "match_like"]

"""Deprecated location of the semi-supervised GAN recipe: use :mod:`genaug.train.recipes.ssgan`."""

from genaug._deprecation import warn_deprecated
from genaug.train.recipes.ssgan import SemiSupervisedConfig, fit_semi_supervised_gan

warn_deprecated("genaug.train.semisupervised", "genaug.train.recipes.ssgan", stacklevel=2)

__all__ = ["SemiSupervisedConfig", "fit_semi_supervised_gan"]

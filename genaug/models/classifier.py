"""A small CNN classifier: labels samples of unconditional generators and judges quality."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from genaug._validation import check_float, check_image_shape, check_int
from genaug.models.config import ModelConfig
from genaug.models.layers import resolve_stage_channels
from genaug.registry import register_model


@dataclasses.dataclass
class ClassifierConfig(ModelConfig):
    """conv 3x3 (32) -> pool -> conv 3x3 (64) -> pool -> dense 128 -> classes.

    Args:
        image_shape: (C, H, W) of inputs in [0, 1].
        num_classes: number of classes (>= 2).
        channels: convolution channels; each stage halves H and W. None: one stage per
            halving of the image size (two at 28x28, four at 64x64), ``width`` first,
            doubling per stage.
        width: channels of the first stage when ``channels`` is None (default 32).
        hidden: width of the dense feature layer.
        dropout: dropout before the last layer.
    """

    image_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10
    channels: tuple[int, ...] | None = None
    width: int | None = None
    hidden: int = 128
    dropout: float = 0.25

    def __post_init__(self) -> None:
        resolve_stage_channels(self, "channels", "width", 32)
        self.image_shape = check_image_shape(
            "image_shape", self.image_shape, multiple_of=2 ** len(self.channels)
        )
        check_int("num_classes", self.num_classes, minimum=2)
        check_int("hidden", self.hidden, minimum=1)
        check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)


@register_model("classifier", config=ClassifierConfig)
class Classifier(nn.Module):
    """``forward(x)`` returns class logits; ``features(x)`` the dense features."""

    input_range = "sigmoid"

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        layers: list[nn.Module] = []
        ch = c
        for out in config.channels:
            layers += [nn.Conv2d(ch, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            ch = out
        scale = 2 ** len(config.channels)
        layers += [
            nn.Flatten(),
            nn.Linear(ch * (h // scale) * (w // scale), config.hidden),
            nn.ReLU(),
        ]
        self.trunk = nn.Sequential(*layers)
        self.out_features = config.hidden
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.hidden, config.num_classes))

    def feature_extractor(self) -> nn.Module:
        return self.trunk

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

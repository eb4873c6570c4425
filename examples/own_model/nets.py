"""A torchvision model as a user's model, by dotted reference.

``[task] model = "nets:small_resnet18"`` names the factory below (this file is beside the
config; the current folder is importable). fedsim calls a model factory with the arguments it
names among ``input_shape`` and ``num_classes``; a factory with only ``**kwargs``, such as
``torchvision.models:resnet18`` itself, gets ``num_classes``. Run from this folder::

    cd examples/own_model
    fedsim run resnet18.toml --engine inprocess

torchvision's ResNet-18 expects 3-channel images of at least 32x32; for the 1x8x8 digits the
stem becomes a 3x3 convolution on the input's channels without the max-pool.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18


def small_resnet18(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 (GroupNorm for BatchNorm, so averaging needs no running
    statistics) with a stem for small images of ``input_shape``."""
    model = resnet18(num_classes=num_classes, norm_layer=lambda c: nn.GroupNorm(8, c))
    model.conv1 = nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model

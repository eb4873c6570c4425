"""K clients' copies of one feed-forward network as one set of grouped kernels (no ``vmap``).

``vmap`` runs a stacked network by folding the client axis into each operator's batch axis,
and between layers it copies activations from one layout to another; on a CPU it also lands
max-pooling on PyTorch's slow NCHW kernel. For a network that is a chain of common layers
(an ``nn.Sequential`` of convolutions, linear layers, pools, activations and ``Flatten``)
the same K forward passes can instead be written with the client axis inside the kernels:

- image activations are one tensor ``[B, K*C, H, W]`` (client ``k``'s channels are the
  ``k``-th block of ``C``) in channels-last memory; a convolution of the K clients is one
  grouped convolution (``groups = K``; Krizhevsky et al. 2012's grouped filters) with the K
  weight tensors concatenated along the output channels; pools and activations act per
  channel, so they need no change;
- flat activations are ``[K, B, F]``; a linear layer is one batched matrix product
  (``baddbmm``) with the K weight matrices.

The K losses are summed and differentiated once: client ``k``'s parameters only touch
client ``k``'s loss, so the gradient of the sum with respect to them is client ``k``'s own
gradient (the same arithmetic as one client alone, summed in another order). About a fifth
faster than ``vmap`` for the digits CNN on one CPU thread
(``benchmarks/stacked_kernels.py``). :func:`stacked_forward` returns
None for any other network, and the caller then uses ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
               nn.Identity)
"""Layers that act on each value alone: the same on any layout."""

CHANNELWISE = (nn.MaxPool2d, nn.AvgPool2d)
"""Layers that act on each channel of an image alone: the same on the grouped layout."""

StackedParams = dict[str, torch.Tensor]
StackedForward = Callable[[StackedParams, torch.Tensor], torch.Tensor]
"""``(params, xs) -> logits``: params stacked along dim 0 (K clients), ``xs`` of shape
``[K, B, *input]``, logits ``[K, B, classes]``."""


def chain(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]] | None:
    """The layers ``model`` applies one after another, with their parameter-name prefixes
    (None: it is not a plain chain of supported layers)."""
    if isinstance(model, nn.Sequential):
        layers: list[tuple[str, nn.Module]] = []
        for name, child in model.named_children():
            inner = chain(child, f"{prefix}{name}.")
            if inner is None:
                return None
            layers += inner
        return layers
    if any(True for _ in model.buffers()):
        return None
    if isinstance(model, nn.Conv2d):
        ok = model.groups == 1 and model.padding_mode == "zeros"
    elif isinstance(model, CHANNELWISE):
        ok = not getattr(model, "return_indices", False)
    elif isinstance(model, nn.Flatten):
        ok = model.start_dim == 1 and model.end_dim == -1
    else:
        ok = isinstance(model, (nn.Linear, *ELEMENTWISE))
    return [(prefix, model)] if ok else None


def stacked_forward(model: nn.Module) -> StackedForward | None:
    """The K-client forward pass of ``model`` as grouped kernels, or None where ``model`` is
    not an ``nn.Sequential`` chain of ``Conv2d`` (ungrouped, zero padding), ``Linear``,
    ``MaxPool2d``/``AvgPool2d``, ``Flatten`` and element-wise activations."""
    layers = chain(model)
    if not layers:
        return None

    def forward(params: StackedParams, xs: torch.Tensor) -> torch.Tensor:
        k, b = xs.shape[:2]
        h, layout = xs, "raw"  # raw [K, B, *input]; image [B, K*C, H, W]; flat [K, B, F]
        for prefix, layer in layers:
            if isinstance(layer, (nn.Conv2d, *CHANNELWISE)):
                if layout == "raw" and h.dim() == 5:
                    h = h.transpose(0, 1).reshape(b, k * h.shape[2], *h.shape[3:]) \
                        .contiguous(memory_format=torch.channels_last)
                    layout = "image"
                if layout != "image":
                    raise NotStackable(f"{type(layer).__name__} on flat features")
                if isinstance(layer, nn.Conv2d):
                    h = grouped_conv(layer, params, prefix, h, k)
                else:
                    h = layer(h)
            elif isinstance(layer, nn.Flatten):
                h = h.reshape(b, k, -1).transpose(0, 1) if layout == "image" \
                    else h.reshape(k, b, -1)
                layout = "flat"
            elif isinstance(layer, nn.Linear):
                if layout == "image" or h.dim() != 3:
                    raise NotStackable("a linear layer on image activations")
                weight = params[f"{prefix}weight"]
                bias = params.get(f"{prefix}bias")
                h = torch.bmm(h, weight.transpose(1, 2)) if bias is None else \
                    torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
                layout = "flat"
            else:
                h = layer(h)
        if layout == "image":
            raise NotStackable("the network ends on image activations")
        return h

    return forward


class NotStackable(ValueError):
    """The network's layers do not fit the grouped layouts (the caller uses ``vmap``)."""


def grouped_conv(layer: nn.Conv2d, params: StackedParams, prefix: str, h: torch.Tensor,
                 k: int) -> torch.Tensor:
    """K clients' ``layer`` on the grouped layout ``[B, K*C, H, W]``: one convolution with
    ``groups = K`` and the K weight tensors ``[K, O, C, kh, kw]`` as ``[K*O, C, kh, kw]``."""
    weight = params[f"{prefix}weight"]
    bias = params.get(f"{prefix}bias")
    out_channels = weight.shape[1]
    return F.conv2d(h, weight.reshape(k * out_channels, *weight.shape[2:]),
                    None if bias is None else bias.reshape(-1), layer.stride, layer.padding,
                    layer.dilation, groups=k)


def stacked_cross_entropy_gradient(forward: StackedForward, names: list[str],
                                   frozen: dict[str, torch.Tensor]) -> Callable[
        ..., tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """``(params, xs, ys) -> (grads, losses)`` for the mean cross-entropy of each client's
    batch (``fedsim.tasks.training.cross_entropy``), through :func:`stacked_forward`."""

    def step(params: StackedParams, xs: torch.Tensor, ys: torch.Tensor) -> tuple[
            dict[str, torch.Tensor], torch.Tensor]:
        k, b = xs.shape[:2]
        leaves = {n: params[n].detach().requires_grad_() for n in names}
        given = {**{n: t.unsqueeze(0).expand(k, *t.shape) for n, t in frozen.items()},
                 **leaves}
        with torch.enable_grad():
            logits = forward(given, xs)
            losses = F.cross_entropy(logits.reshape(k * b, -1), ys.reshape(-1),
                                     reduction="none").view(k, b).mean(1)
            grads = torch.autograd.grad(losses.sum(), [leaves[n] for n in names])
        return dict(zip(names, grads, strict=True)), losses.detach()

    return step

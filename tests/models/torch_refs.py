"""PyTorch reference models for the parity and parameter-count tests (skipped without the `convert` extra)."""

import importlib.util

import numpy as np
import pytest


def import_torch():
  module = pytest.importorskip("torch")
  module.manual_seed(0)
  return module


def torchvision_video():
  import_torch()
  if importlib.util.find_spec("torchvision") is None:
    pytest.skip("torchvision is not installed")
  load_torchvision()
  import torchvision.models.video as video

  return video


def load_torchvision():
  from jvssl.models import convert

  convert.load_torchvision()


def randomize(torch, model):
  """Random weights everywhere (biases, norms and BatchNorm statistics included), scaled to keep outputs O(1)."""
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for name, t in model.state_dict().items():
      if name.endswith("num_batches_tracked"):
        continue
      if name.endswith("running_var"):
        t.copy_(0.5 + torch.rand(t.shape, generator=gen))
      elif t.ndim == 1 and name.endswith("weight"):  # Norm scales.
        t.copy_(0.5 + torch.rand(t.shape, generator=gen))
      elif t.ndim <= 1 or name.endswith("mask_token"):
        t.copy_(0.1 * torch.randn(t.shape, generator=gen))
      else:
        fan_in = t[0].numel()
        t.copy_(torch.randn(t.shape, generator=gen) / np.sqrt(fan_in))
  return model.eval()


def state_dict(model) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}

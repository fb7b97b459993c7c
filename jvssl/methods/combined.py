"""A weighted sum of several registered methods' losses, all training one shared encoder.

config.method.methods names the parts and config.method.weights their weights;
each part's own fields are in config.method.<name> (e.g. VideoMAE + SimCLR, the
combination of masked modelling and contrast). Parts that contrast clips
(`uses_clips`) get the batch's clips; the others get its first clip, so both
share the same views.
"""

import jax
from flax import nnx
from ml_collections import ConfigDict

from jvssl import registry
from jvssl.methods import views
from jvssl.methods.base import Method

_NOT_COMBINABLE = ("combined", "classify")


def part_config(config, name: str) -> ConfigDict:
  """The full config a part would have on its own: config with method = config.method.<name>."""
  sub = config.copy_and_resolve_references()
  sub.unlock()
  sub.method = ConfigDict(dict(config.method[name].to_dict(), name=name))
  return sub


class CombinedModel(nnx.Module):
  """`.encoder` shared by `.parts[name]` (each part's own module, its encoder replaced by the shared one)."""

  def __init__(self, parts: dict, rngs: nnx.Rngs):
    built = {name: method.build(rngs) for name, method in parts.items()}
    self.encoder = next(iter(built.values())).encoder
    for module in built.values():
      module.encoder = self.encoder
    self.parts = nnx.Dict(built)


@registry.METHODS.register("combined")
class Combined(Method):
  uses_clips = True

  @staticmethod
  def default_config() -> ConfigDict:
    c = ConfigDict({"methods": ("videomae", "simclr"), "weights": (1.0, 1.0)})
    for name in registry.METHODS.names():
      if name not in _NOT_COMBINABLE:
        c[name] = registry.METHODS.get(name).default_config()
    return c

  def __init__(self, config):
    super().__init__(config)
    m = config.method
    if len(m.methods) != len(m.weights) or not m.methods:
      raise ValueError(f"method.methods {list(m.methods)} and method.weights {list(m.weights)} must match")
    for name in m.methods:
      if name in _NOT_COMBINABLE or name not in m:
        raise ValueError(f"method '{name}' cannot be combined; one of {sorted(k for k in m if k not in ('methods', 'weights'))}")
    self.parts = {name: registry.METHODS.get(name)(part_config(config, name)) for name in m.methods}

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    return CombinedModel(self.parts, rngs)

  def loss(self, model, batch, rng):
    total, metrics = 0.0, {}
    for i, (name, weight) in enumerate(zip(self.parts, self.config.method.weights)):
      method = self.parts[name]
      video = batch["video"] if getattr(method, "uses_clips", False) else views.first_clip(batch["video"])
      loss, part_metrics = method.loss(model.parts[name], dict(batch, video=video), jax.random.fold_in(rng, i))
      total = total + weight * loss
      metrics[f"{name}/loss"] = loss
      metrics.update({f"{name}/{k}": v for k, v in part_metrics.items()})
    return total, metrics

  def after_update(self, params, rest, step):
    # Each part sees its own subtree with the shared encoder at "encoder", as it would alone.
    params_parts, rest_parts = dict(params["parts"]), dict(rest.get("parts", {}))
    for name, method in self.parts.items():
      p = dict(params_parts[name], encoder=params["encoder"])
      r = dict(rest_parts.get(name, {}), encoder=rest.get("encoder", {}))
      p, r = method.after_update(p, r, step)
      params_parts[name] = {k: v for k, v in p.items() if k != "encoder"}
      if name in rest_parts:  # The state's structure is fixed: a part without state has no entry.
        rest_parts[name] = {k: v for k, v in r.items() if k != "encoder"}
    return dict(params, parts=params_parts), (dict(rest, parts=rest_parts) if "parts" in rest else rest)

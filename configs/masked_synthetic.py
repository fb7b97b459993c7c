"""The masked-modelling family on jvssl's synthetic data, on the geometry of the VideoMAE demo
(configs/videomae_synthetic.py), so their results compare with it directly.

Variants name the method: `:vjepa` (latents of an EMA target encoder), `:vjepa2` (the same with V-JEPA 2's
3-D rotary positions), `:maskfeat` (HOG of masked
tubes), `:videomae_v2` (VideoMAE with dual masking: the decoder reconstructs half of the masked
tokens), `:future` (VideoMAE masking the last frames, 3D-CSL's PredMAE), `:mvd` (features of frozen
image and video teachers), `:videomae` (the demo itself, with this file's evaluations); add
`,runlocal` for a CPU smoke run.
  python -m jvssl.main --config=configs/masked_synthetic.py:vjepa --workdir=/tmp/vjepa
  python -m jvssl.tools.compare_methods --config=configs/masked_synthetic.py --methods=videomae,vjepa,maskfeat \
      --workdir=/tmp/compare_masked
"""

import importlib.util
import os

from jvssl.config import base_config, parse_arg

METHODS = ("vjepa", "vjepa2", "maskfeat", "videomae_v2", "future", "mvd", "videomae")
# Variants that are VideoMAE with other masking.
_VIDEOMAE = ("videomae", "videomae_v2", "future")
# Sections the demo's geometry and training schedule are copied from.
_SHARED = ("seed", "data", "optimizer", "schedule", "train", "eval")


def _sibling(name: str):
  """The config module configs/<name>.py beside this file."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"jvssl_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg=None):
  arg = parse_arg(arg, method="vjepa", runlocal=False)
  if arg.method not in METHODS:
    raise ValueError(f"unknown variant {arg.method!r}; one of {', '.join(METHODS)}")
  ssl = _sibling("ssl_synthetic")
  demo = ssl.demo_config(arg.runlocal)
  method = "videomae" if arg.method in _VIDEOMAE else "vjepa" if arg.method == "vjepa2" else arg.method
  c = base_config(model="vit", method=method)
  for key in _SHARED:
    c[key] = demo[key].copy_and_resolve_references() if key != "seed" else demo[key]
  c.model = demo.model.copy_and_resolve_references()
  # The schedule this file's results were measured with (the demo's until it moved to 3000 steps at 1e-3).
  c.optimizer.lr = 1.5e-3
  if not arg.runlocal:
    c.train.num_steps = 1500
  m = c.method
  decoder = (demo.method.decoder_width, demo.method.decoder_depth, demo.method.decoder_heads)
  if arg.method in _VIDEOMAE:
    c.method = demo.method.copy_and_resolve_references()
    if arg.method == "videomae_v2":
      c.method.decoder_mask_ratio = 0.5  # VideoMAE V2's running-cell decoder mask.
    elif arg.method == "future":
      # The last half of the token frames; the demo's 8 frames are 2 token frames, so this is the last one.
      c.method.mask_type, c.method.mask_ratio = "future", 0.5
  elif arg.method in ("vjepa", "vjepa2"):
    # A predictor as narrow as the demo's decoder; V-JEPA's blocks as they are (short ones are 5 of 36 positions).
    m.predictor_width, m.predictor_depth, m.predictor_heads = decoder
    m.min_context = 4
    m.ema = (0.996, 1.0)
    if arg.method == "vjepa2":
      c.model.pos_embed = "rope"  # V-JEPA 2: 3-D rotary positions in the encoder and the predictor, no table.
  elif arg.method == "maskfeat":
    m.mask_ratio = 0.4
  elif arg.method == "mvd":
    m.decoder_width, m.decoder_depth, m.decoder_heads = decoder
    m.mask_ratio = demo.method.mask_ratio

  # The frozen-feature evaluations of configs/ssl_synthetic.py (linear probe, k-NN, attentive probe), so the
  # masked family's results compare with the contrastive and pretext methods' too.
  c.evals = ssl.get_config("runlocal" if arg.runlocal else None).evals
  c.lock()
  return c

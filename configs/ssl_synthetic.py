"""Contrastive, self-distillation and pretext methods on jvssl's synthetic data, on the geometry of the
VideoMAE demo (configs/videomae_synthetic.py), so their results compare with it directly.

Variants name the method: `:simclr`, `:moco_v3`, `:byol`, `:dino`, `:vicreg`, `:pretext`, `:combined`
(VideoMAE + SimCLR on one encoder), `:videomae` (the demo itself, with this file's evaluations);
add `,runlocal` for a CPU smoke run.
  python -m jvssl.main --config=configs/ssl_synthetic.py:simclr --workdir=/tmp/simclr
  python -m jvssl.tools.compare_methods --config=configs/ssl_synthetic.py --methods=videomae,simclr,byol \
      --workdir=/tmp/compare --config.train.num_steps=300
"""

import importlib.util
import os

from jvssl.config import base_config, eval_config, parse_arg

METHODS = ("simclr", "moco_v3", "byol", "dino", "vicreg", "pretext", "combined", "videomae")
# Sections the demo's geometry and training schedule are copied from.
_SHARED = ("seed", "data", "optimizer", "schedule", "train", "eval")


def demo_config(runlocal: bool):
  """configs/videomae_synthetic.py's config (its geometry is what every variant here uses)."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "videomae_synthetic.py")
  spec = importlib.util.spec_from_file_location("jvssl_videomae_synthetic", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("runlocal" if runlocal else None)


def get_config(arg=None):
  arg = parse_arg(arg, method="simclr", runlocal=False)
  if arg.method not in METHODS:
    raise ValueError(f"unknown variant {arg.method!r}; one of {', '.join(METHODS)}")
  demo = demo_config(arg.runlocal)
  c = base_config(model="vit", method=arg.method)
  for key in _SHARED:
    c[key] = demo[key].copy_and_resolve_references() if key != "seed" else demo[key]
  c.model = demo.model.copy_and_resolve_references()
  width = demo.model.width
  hidden, embed = 4 * width, width

  # Several clips per video at different times, each with its own crop (CVRL's sampling).
  c.data.synthetic.video_length = 2 * c.data.num_frames * c.data.frame_stride
  if arg.method in ("simclr", "moco_v3", "byol", "vicreg", "combined"):
    c.data.clips_per_video = 2
    c.data.augment.random_crop_scale = (0.3, 1.0)
    c.data.augment.flip = True
  m = c.method
  if arg.method == "videomae":
    c.method = demo.method.copy_and_resolve_references()
  elif arg.method in ("simclr", "moco_v3", "byol"):
    m.hidden_dim, m.embed_dim, m.head_layers = hidden, embed, 2
    m.view_color_strength, m.view_grayscale_prob = 0.5, 0.2
    if arg.method != "simclr":
      m.predictor_layers = 2
  elif arg.method == "dino":
    m.hidden_dim, m.bottleneck_dim, m.num_prototypes = hidden, embed, 256
    m.num_global_views, m.num_local_views = 2, 2
    m.teacher_temp, m.warmup_teacher_temp, m.teacher_temp_warmup_steps = 0.07, 0.04, c.train.num_steps // 3
    m.view_color_strength, m.view_grayscale_prob = 0.5, 0.2
  elif arg.method == "vicreg":
    m.expander_dim = hidden  # The paper's expander is 4x wider than ResNet-50's 2048-d output.
    m.view_color_strength, m.view_grayscale_prob = 0.5, 0.2
  elif arg.method == "pretext":
    m.speeds = (1, 2, 4)
    m.order_segments = 4 if c.data.num_frames >= 8 else 2
    m.order_permutations = 12 if c.data.num_frames >= 8 else 2
    m.jigsaw_grid = (1, 2, 2)
    m.jigsaw_permutations = 12
  elif arg.method == "combined":
    m.methods, m.weights = ("videomae", "simclr"), (1.0, 1.0)
    for key, value in demo.method.items():
      if key != "name":
        m.videomae[key] = value
    m.simclr.hidden_dim, m.simclr.embed_dim, m.simclr.head_layers = hidden, embed, 2
    m.simclr.view_color_strength, m.simclr.view_grayscale_prob = 0.5, 0.2

  # Frozen-feature evaluations of the pooled embedding, the same for every method.
  c.evals.knn = eval_config("knn", num_train=demo.evals.knn.num_train, readout="mean")
  c.evals.linear_probe = eval_config(
    "linear_probe", num_train=demo.evals.linear_probe.num_train, readout="mean", steps=demo.evals.linear_probe.steps
  )
  c.lock()
  return c

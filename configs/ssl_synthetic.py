"""Contrastive, self-distillation and pretext methods on jvssl's synthetic data, on the geometry of the
VideoMAE demo (configs/videomae_synthetic.py), so their results compare with it directly.

Variants name the method: `:simclr`, `:moco_v3`, `:byol`, `:dino`, `:vicreg`, `:pretext` (all four tasks),
`:pretext_speed`, `:pretext_order`, `:pretext_jigsaw`, `:pretext_rotation` (one task alone), `:combined`
(VideoMAE + SimCLR on one encoder), `:videomae` (the demo's method, with this file's data and evaluations);
add `,runlocal` for a CPU smoke run. The data is the demo's (version 1 of the synthetic set); `,version=2`
draws every clip's colours and background afresh, so two clips of a video share only their shape, motion and
geometry (`,shared_geometry=False`: not even the geometry).
  python -m jvssl.main --config=configs/ssl_synthetic.py:simclr --workdir=/tmp/simclr
  python -m jvssl.tools.compare_methods --config=configs/ssl_synthetic.py --methods=videomae,simclr,byol \
      --workdir=/tmp/compare --config.train.num_steps=300
"""

import importlib.util
import os

from jvssl.config import base_config, eval_config, parse_arg

PRETEXT_TASKS = ("speed", "order", "jigsaw", "rotation")
METHODS = (
  ("simclr", "moco_v3", "byol", "dino", "vicreg", "pretext")
  + tuple(f"pretext_{task}" for task in PRETEXT_TASKS)
  + ("combined", "videomae")
)
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
  arg = parse_arg(arg, method="simclr", runlocal=False, version=1, shared_geometry=True)
  if arg.method not in METHODS:
    raise ValueError(f"unknown variant {arg.method!r}; one of {', '.join(METHODS)}")
  task = arg.method.removeprefix("pretext_") if arg.method.startswith("pretext_") else None
  method = "pretext" if task else arg.method
  demo = demo_config(arg.runlocal)
  c = base_config(model="vit", method=method)
  for key in _SHARED:
    c[key] = demo[key].copy_and_resolve_references() if key != "seed" else demo[key]
  c.model = demo.model.copy_and_resolve_references()
  # The schedule this file's results were measured with (the demo's until it moved to 3000 steps at 1e-3).
  c.optimizer.lr = 1.5e-3
  if not arg.runlocal:
    c.train.num_steps = 1500
  width = demo.model.width
  hidden, embed = 4 * width, width

  syn = c.data.synthetic
  if arg.version == 2:
    syn.version = 2
    syn.cache = False  # Every clip is drawn afresh.
    # Each clip spans its whole video: with nothing but shape and motion shared by a video's clips, a longer
    # video would only make the motion within one clip smaller.
    syn.video_length = 0
    syn.radius, syn.zoom, syn.travel = (0.18, 0.26), (0.25, 0.5), (0.2, 0.4)
    # A video's clips share its shapes' size, path and speed and differ in colours and background (the shortcut
    # version 2 removes): with nothing but the class in common, the contrastive methods' two clips looked as
    # unrelated as two videos of one class, and their embeddings collapsed (README, "version 2").
    syn.shared_geometry = arg.shared_geometry
  else:
    # Several clips per video at different times (CVRL's sampling).
    syn.video_length = 2 * c.data.num_frames * c.data.frame_stride
  if method in ("simclr", "moco_v3", "byol", "vicreg", "combined"):
    c.data.clips_per_video = 2
    c.data.augment.random_crop_scale = (0.3, 1.0)  # Each clip its own crop.
    c.data.augment.flip = arg.version == 1  # A mirror image turns motion "right" into "left".
  if arg.version == 2 and method in ("simclr", "moco_v3", "byol", "dino", "vicreg", "combined"):
    # At the demo's 1.5e-3 SimCLR's embeddings collapse within 500 steps on version 2 (combined has SimCLR's loss).
    c.optimizer.lr = 3e-4
  if arg.version == 2 and method == "videomae":
    c.optimizer.lr = 1e-3  # Shape linear probe 44.7% against 30.6% at the demo's 1.5e-3 (README, "version 2").
  m = c.method
  if method == "videomae":
    c.method = demo.method.copy_and_resolve_references()
  elif method in ("simclr", "moco_v3", "byol"):
    m.hidden_dim, m.embed_dim, m.head_layers = hidden, embed, 2
    m.view_color_strength, m.view_grayscale_prob = 0.5, 0.2
    if method != "simclr":
      m.predictor_layers = 2
    if arg.version == 2 and method != "simclr":
      # Version 2 redraws a clip's colours, which then decide a random encoder's embedding: two clips of a video
      # are each other's nearest of 64 no more often than chance (1.6%; 18% with both standardised), so a random
      # momentum teacher's keys held nothing the student could predict and MoCo v3 stayed at chance, BYOL
      # collapsed (README, "version 2"). Standardised views leave the teacher the clips' shared content.
      m.view_standardize = True
  elif method == "dino":
    m.hidden_dim, m.bottleneck_dim, m.num_prototypes = hidden, embed, 256
    m.num_global_views, m.num_local_views = 2, 2
    m.teacher_temp, m.warmup_teacher_temp, m.teacher_temp_warmup_steps = 0.07, 0.04, c.train.num_steps // 3
    m.view_color_strength, m.view_grayscale_prob = 0.5, 0.2
  elif method == "vicreg":
    m.expander_dim = hidden  # The paper's expander is 4x wider than ResNet-50's 2048-d output.
    m.view_color_strength, m.view_grayscale_prob = 0.5, 0.2
  elif method == "pretext":
    m.speeds = (1, 2, 4)
    m.order_segments = 4 if c.data.num_frames >= 8 else 2
    m.order_permutations = 12 if c.data.num_frames >= 8 else 2
    m.jigsaw_grid = (1, 2, 2)
    m.jigsaw_permutations = 12
    m.jigsaw_context_free = False  # Version 1's README rows were measured with the puzzle as one clip.
    if task:
      m.tasks, m.task_weights = (task,), (1.0,)
    if arg.version == 2:
      # A clip's colours decide a random ViT's features and hide the few pixels a task's label shows in: without
      # standardised views every task stayed at chance; with them pretext_speed's motion linear probe is 81.1%
      # against the random encoder's 39.3% (README, "version 2").
      m.view_standardize = True
      # The jigsaw of the papers: cells cut in time as well (the method's default grid), each seen alone by the
      # encoder (context-free), with a gap and jitter between their contents. With the puzzle as one clip it
      # never passed the random encoder's linear probes (26.9% shape / 39.3% motion): 26.7% / 39.1% on this grid,
      # the cells placed by the pixels on either side of a cut. Context-free: 32.2% / 30.5%; with a 4-pixel gap
      # 33.0% / 50.1% (README, "version 2").
      m.jigsaw_grid = (2, 2, 2)
      m.jigsaw_context_free = True
      m.jigsaw_gap = 4
      if task == "rotation":
        # At 1.5e-3 rotation stayed at chance (shape linear probe 22.1%); at 3e-4: 38.2% (README).
        c.optimizer.lr = 3e-4
  elif method == "combined":
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
  # A one-block attentive probe on the frozen tokens, 2 x 2 settings of V-JEPA 2's sweep: small enough for a CPU.
  c.evals.attentive_probe = eval_config(
    "attentive_probe",
    num_train=demo.evals.linear_probe.num_train,
    depth=1,
    num_heads=4,
    lrs=(3e-3, 1e-3),
    weight_decays=(0.01, 0.1),
    batch_size=128,
    num_epochs=10,
  )
  if arg.runlocal:
    c.evals.attentive_probe.num_heads, c.evals.attentive_probe.num_epochs = 2, 2
    c.evals.attentive_probe.batch_size = 16
  c.lock()
  return c

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jvssl/jvssl/blob/main/notebooks/01_data_and_masking.ipynb)
#
# # Data, views and masks
#
# What a self-supervised video method is given: clips from a data source (jvssl's embedded
# synthetic videos unless a path below names real ones), the augmentations that make a training
# clip and the views that contrastive and pretext methods make of it, and the masks of the masked
# family (VideoMAE's tubes, MAE-ST's random tokens, PredMAE's future frames, V-JEPA's multi-block,
# VideoMAE V2's decoder cells). Nothing is trained and nothing is downloaded here.

# %%
# Installs jvssl when it is not importable (a fresh Colab runtime); does nothing in a checkout's venv.
# The clone also brings configs/, which the package itself does not include.
import importlib.util
import os
import subprocess
import sys

REPO_URL = "https://github.com/jvssl/jvssl"
CLONE = "jvssl-src"  # Not "jvssl": a folder of that name in the working directory would shadow the package.
if importlib.util.find_spec("jvssl") is None:
  if not os.path.isdir(CLONE):
    subprocess.run(["git", "clone", "--depth=1", REPO_URL, CLONE], check=True)
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"{CLONE}[notebooks]"], check=True)
  importlib.invalidate_caches()

from jvssl import notebook

# Logging for the notebook, TensorFlow quiet, and ROOT: the checkout holding configs/.
ROOT = notebook.setup(CLONE)

# %% [markdown]
# ## Settings
# `RUNTIME = "cpu"` keeps everything small; `"gpu"` or `"tpu"` shows longer, larger clips.
# Set `VIDEO_LIST` (an annotation list, see the README's "A folder of video files") or `TFRECORDS`
# (a glob of shards made by `python -m jvssl.tools.make_tfrecords`) to look at real video instead.

# %%
RUNTIME = "cpu"
SETTINGS = {
  # 8 frames of 64x64 in 2x8x8 tubelets: a 4x8x8 grid of tokens, fine enough to see each mask's pattern.
  "cpu": dict(num_frames=8, image_size=64, patch_size=(2, 8, 8), num_clips=4),
  "gpu": dict(num_frames=16, image_size=112, patch_size=(2, 16, 16), num_clips=6),
}
SETTINGS["tpu"] = SETTINGS["gpu"]
S = SETTINGS[RUNTIME]
VIDEO_LIST = ""  # e.g. "/content/videos/train.csv" (paths in it relative to VIDEO_ROOT).
VIDEO_ROOT = ""
TFRECORDS = ""  # e.g. "/content/k400/train-*-of-*".

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np

from jvssl import config as config_lib
from jvssl.data import augment, pipeline, synthetic

config = config_lib.load(os.path.join(ROOT, "configs", "videomae_synthetic.py:runlocal"))
with config.unlocked():
  config.data.num_frames, config.data.frame_stride = S["num_frames"], 1
  config.data.image_size = S["image_size"]
  config.model.patch_size = S["patch_size"]
  config.data.synthetic.cache = False  # Only a few clips are drawn.
  if VIDEO_LIST:
    config.data.source = "video_folder"
    config.data.video_folder.root, config.data.video_folder.train_list = VIDEO_ROOT, VIDEO_LIST
  elif TFRECORDS:
    config.data.source = "tfrecord"
    config.data.tfrecord.train_files = TFRECORDS
print(jax.devices(), "| source:", config.data.source)


def show_clips(clips, titles=(), title=""):
  """clips: uint8 [N, T, H, W, 3] -> one row of frames per clip, left to right in time."""
  fig, axes = plt.subplots(len(clips), 1, figsize=(1.2 * clips.shape[1], 1.3 * len(clips)), squeeze=False)
  for i, clip in enumerate(clips):
    axes[i, 0].imshow(np.concatenate(list(clip), axis=1))
    axes[i, 0].set_axis_off()
    if i < len(titles):
      axes[i, 0].set_title(titles[i], fontsize=8, loc="left")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig


# %% [markdown]
# ## Clips as the training loop reads them
# `pipeline.train_dataset` is the loop's own input: a batch of uint8 clips `[B, T, H, W, 3]` and,
# where the source has them, labels. The synthetic class is the shape; its motion, colours and
# background are nuisances a representation should see past.

# %%
with config.unlocked():
  config.data.batch_size = S["num_clips"]
batch = next(pipeline.train_dataset(config).as_numpy_iterator())
names = synthetic.CLASS_NAMES[config.data.synthetic.label] if config.data.source == "synthetic" else None
titles = [names[y] if names else str(y) for y in batch["label"]] if "label" in batch else ()
show_clips(batch["video"], titles, "training clips")
plt.show()

# %% [markdown]
# ## Augmentations on the host
# `data.augment` makes each training clip: a random resized crop, a flip, colour jitter, grey and
# blur, with one draw of parameters for all frames of a clip (so motion stays intact). The same
# clip, four draws:

# %%
import tensorflow as tf

aug = config.data.copy_and_resolve_references()
aug.augment.random_crop_scale = (0.3, 1.0)
aug.augment.flip = True
aug.augment.color_jitter = (0.4, 0.4, 0.4, 0.1)
aug.augment.grayscale_prob, aug.augment.blur_prob = 0.2, 0.5
clip = tf.constant(batch["video"][0])
draws = np.stack([augment.train_augment(clip, tf.constant([0, seed], tf.int64), aug).numpy() for seed in range(4)])
show_clips(np.concatenate([batch["video"][:1], draws]), ["original"] + [f"draw {s}" for s in range(4)], "augmentations")
plt.show()

# %% [markdown]
# ## Views made on the device
# Contrastive methods (SimCLR, MoCo v3, BYOL, DINO, VICReg) contrast views of one clip: a window of
# part of its duration resampled to the clip's length, a crop, a flip and a colour change. Pretext
# methods make a view and the label to predict: playback speed, segment order, rotation.

# %%
import jax.numpy as jnp

from jvssl.methods import views

view_options = views.options(config_lib.base_config(method="simclr").method) | dict(color_strength=0.5)
orders = views.permutation_set(4, 4)


@jax.jit  # One compiled function instead of one per operation: seconds less on a CPU.
def make_views(video, key):
  """video float [1, T, H, W, 3] in [0, 1] -> 3 contrastive views, then each pretext view and its label."""
  k = jax.random.split(key, 4)
  contrast = views.clip_views(k[0], video, 3, **view_options)[0]
  return (
    contrast,
    views.speed_views(k[1], video, (1, 2, 4)),
    views.shuffle_segments(k[2], video, orders),
    views.rotate(k[3], video),
  )


video = jnp.asarray(batch["video"][:1]).astype(jnp.float32) / 255.0  # [1, T, H, W, 3]
contrast, (fast, speed), (order, which), (turned, quarter) = make_views(video, jax.random.key(0))
rows = jnp.concatenate([video, contrast, fast, order, turned])
titles = ["clip", "view 1", "view 2", "view 3"]
titles += [f"speed label {int(speed[0])}", f"order label {int(which[0])}", f"rotation {90 * int(quarter[0])} deg"]
show_clips(np.asarray(jnp.clip(rows, 0, 1) * 255).astype(np.uint8), titles, "views")
plt.show()

# %% [markdown]
# ## Masks of the masked family
# Each function returns which tokens (tubelets of `model.patch_size`) the encoder sees. Masked
# tubelets are drawn grey:
# * **tube** (VideoMAE): the same positions in every frame, so a masked patch cannot be copied from
#   the frame before;
# * **random** (MAE-ST): any 90% of the space-time tokens;
# * **future** (PredMAE): the last frames, predicted from the first;
# * **multi-block** (V-JEPA): the union of a few large space-time blocks; V-JEPA uses one set of 8
#   short-range and one of 2 long-range blocks;
# * **running cell** (VideoMAE V2's decoder mask): of every 2x2 cell, the decoder reconstructs only
#   some positions, moving on by one each token frame.

# %%
from jvssl.methods import videomae, vjepa

pt, ph, pw = config.model.patch_size
grid = (config.data.num_frames // pt, config.data.image_size // ph, config.data.image_size // pw)
n_tokens = int(np.prod(grid))


def from_indices(visible):
  """int32 [1, Nv] visible token indices -> bool [1, N], True where masked."""
  return jnp.ones((1, n_tokens), bool).at[0, visible[0]].set(False)


@jax.jit
def make_masks(key):
  """One mask of each kind of MASK_NAMES on the token grid, bool [1, N] each, True where masked."""
  return [
    from_indices(videomae.tube_mask(key, 1, grid, 0.9)[0]),
    from_indices(videomae.random_mask(key, 1, grid, 0.9)[0]),
    from_indices(videomae.future_mask(key, 1, grid, 0.5)[0]),
    vjepa.multiblock_mask(key, 1, grid, 8, 0.15, (0.75, 1.5), 1.0),
    vjepa.multiblock_mask(key, 1, grid, 2, 0.7, (0.75, 1.5), 1.0),
    videomae.running_cell_mask(key, 1, grid, 0.5),
  ]


MASK_NAMES = ("tube 0.9", "random 0.9", "future 0.5", "multi-block 8 x 0.15", "multi-block 2 x 0.7", "running cell 0.5")


def grey_out(clip, masked):
  """uint8 clip [T, H, W, 3] with the tubelets masked [N] ((t h w) order) set to grey."""
  pixels = np.asarray(masked).reshape(grid).repeat(pt, 0).repeat(ph, 1).repeat(pw, 2)
  return np.where(pixels[..., None], np.uint8(GREY), clip)


GREY = 96
masks = dict(zip(MASK_NAMES, jax.device_get(make_masks(jax.random.key(0)))))
clip = batch["video"][0]
fig = show_clips(np.stack([clip] + [grey_out(clip, m[0]) for m in masks.values()]), ["clip", *masks], "masks")
for name, m in masks.items():
  print(f"{name:20s} {np.mean(m):.0%} of {n_tokens} tokens masked")

# %%
PICTURES = os.environ.get("JVSSL_NOTEBOOK_PICTURES", "")  # Set by the README's command to save the figure.
if PICTURES:
  os.makedirs(PICTURES, exist_ok=True)
  fig.savefig(os.path.join(PICTURES, "notebook_masks.png"), dpi=60)
plt.show()

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
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jvssl/jvssl/blob/main/notebooks/02_pretrain_small.ipynb)
#
# # Pretrain a small model
#
# A small video ViT learns by VideoMAE from jvssl's embedded synthetic clips, with the same loop as
# `python -m jvssl.main` (pure jitted steps, orbax checkpoints in the workdir); then its loss curve
# and its reconstructions of held-out clips. One line (`METHOD`) switches to another method of
# `configs/ssl_synthetic.py`. The checkpoint is what `03_representations` evaluates.

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
# `METHOD`: `videomae`, or `simclr`, `moco_v3`, `byol`, `dino`, `vicreg`, `pretext`, `combined`
# (the variants of `configs/ssl_synthetic.py`). `RUNTIME = "cpu"` is a one-layer ViT of width 32
# on 4x32x32 clips for 200 steps (seconds); `"gpu"` or `"tpu"` is the `make demo` model (4 layers
# of width 128 on 8x48x48 clips) for 1500 steps.

# %%
METHOD = "videomae"
RUNTIME = "cpu"
SETTINGS = {
  "cpu": dict(
    arg=",runlocal", overrides=["train.num_steps=500", "data.synthetic.num_train=256", "data.synthetic.num_test=128"]
  ),
  "gpu": dict(arg="", overrides=["train.num_steps=1500"]),
}
SETTINGS["tpu"] = SETTINGS["gpu"]
S = SETTINGS[RUNTIME]
# Runs go under the checkout's workdirs/ (03 looks there for this one); the tests point it elsewhere.
WORKDIRS = os.environ.get("JVSSL_NOTEBOOK_WORKDIR", os.path.join(ROOT, "workdirs", "notebooks"))
WORKDIR = os.path.join(WORKDIRS, "02_pretrain_small")

# %%
import shutil

import jax
import matplotlib.pyplot as plt
import numpy as np

from jvssl import config as config_lib, train

# Evaluation is 03's job: training alone here.
config = config_lib.load(
  os.path.join(ROOT, "configs", f"ssl_synthetic.py:{METHOD}{S['arg']}"),
  S["overrides"] + ["train.log_every_steps=10", "train.checkpoint_every_steps=100000", "evals={}"],
)
print(jax.devices())
print("model:", {k: config.model[k] for k in ("width", "depth", "num_heads", "patch_size")})
print("method:", dict(config.method))

# %% [markdown]
# ## Train
# The loop writes scalars to a writer (TensorBoard's in `python -m jvssl.main`); here a list keeps
# them for the loss curve. A workdir that already holds a run would resume it, so a rerun starts over.

# %%
shutil.rmtree(WORKDIR, ignore_errors=True)
scalars = notebook.Scalars()
result = train.train(config, WORKDIR, writer=scalars)
steps = [s for s, row in scalars.rows if "train/loss" in row]
losses = [row["train/loss"] for _, row in scalars.rows if "train/loss" in row]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(steps, losses)
ax.set_xlabel("step")
ax.set_ylabel("training loss")
ax.set_title(f"{METHOD}, {config.train.num_steps} steps of {config.data.batch_size} clips")
plt.show()
print("checkpoints:", sorted(os.listdir(os.path.join(WORKDIR, "checkpoints"))))

# %% [markdown]
# ## Reconstructions of held-out clips
# For test clips the model never trained on: the clip, what the encoder sees (masked tubelets
# grey), and the decoder's prediction put back in each tubelet's own mean and spread. VideoMAE only.

# %%
from jvssl.data import pipeline
from jvssl.evaluate import pictures

PICTURES = os.environ.get("JVSSL_NOTEBOOK_PICTURES", "")  # Set by the README's command to save the figure.
if METHOD == "videomae":
  ds, n = pipeline.eval_dataset(config, "test", config.eval.batch_size, limit=3)
  test_video = next(pipeline.numpy_batches(ds))["video"][:n]
  image = pictures.reconstruction_picture(
    result.trainer.predictor(result.state), config, test_video, pictures.default_config()
  )
  fig, ax = plt.subplots(figsize=(image.width / 80, image.height / 80))
  ax.imshow(np.asarray(image))
  ax.set_axis_off()
  ax.set_title(f"reconstructions after {config.train.num_steps} steps", fontsize=9)
  if PICTURES:
    os.makedirs(PICTURES, exist_ok=True)
    fig.savefig(os.path.join(PICTURES, "notebook_reconstruction.png"), dpi=80, bbox_inches="tight")
  plt.show()
else:
  print(f"no reconstructions: {METHOD} predicts no pixels (03_representations evaluates any method)")

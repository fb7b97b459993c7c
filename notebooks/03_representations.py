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
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jvssl/jvssl/blob/main/notebooks/03_representations.ipynb)
#
# # What the representation holds
#
# The checkpoint `02_pretrain_small` wrote (or, without one, a tiny model trained here in a few
# seconds) is evaluated on frozen features against its own random initialisation: a linear probe
# and a k-NN classifier, retrieval examples, a 2-D map of the embeddings, and the attention of the
# encoder's last block. With the CPU settings the model is too small and too briefly trained to
# beat its random initialisation by much (chance is 12.5%); `RUNTIME = "gpu"` in 02 and here
# evaluates the `make demo` model, which does (see the README's table).

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
# `RUNTIME = "cpu"` probes with 256 labelled clips; `"gpu"` or `"tpu"` with 2048 (the `make demo`
# protocol). `PRETRAINED` is the workdir of the run to evaluate.

# %%
RUNTIME = "cpu"
SETTINGS = {
  "cpu": dict(num_train=256, probe_steps=100, gallery=256, fallback_steps=100),
  "gpu": dict(num_train=2048, probe_steps=300, gallery=512, fallback_steps=1500),
}
SETTINGS["tpu"] = SETTINGS["gpu"]
S = SETTINGS[RUNTIME]
WORKDIRS = os.environ.get("JVSSL_NOTEBOOK_WORKDIR", os.path.join(ROOT, "workdirs", "notebooks"))
PRETRAINED = os.path.join(WORKDIRS, "02_pretrain_small")

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
from ml_collections import ConfigDict

from jvssl import checkpointing, config as config_lib, sharding, train
from jvssl.trainer import Trainer, run_length

if os.path.isfile(os.path.join(PRETRAINED, "config.json")) and os.path.isdir(os.path.join(PRETRAINED, "checkpoints")):
  workdir = PRETRAINED
  # The run's own record of its config: the model this checkpoint restores into.
  with open(os.path.join(workdir, "config.json")) as f:
    config = ConfigDict(json.load(f))
  config_lib.validate(config)
  print("evaluating", workdir)
else:
  workdir = os.path.join(WORKDIRS, "03_tiny")
  print(f"no run in {PRETRAINED} (run 02_pretrain_small first for a better one): training a tiny one in {workdir}")
  arg = ",runlocal" if RUNTIME == "cpu" else ""
  config = config_lib.load(
    os.path.join(ROOT, "configs", f"ssl_synthetic.py:videomae{arg}"),
    [f"train.num_steps={S['fallback_steps']}", "train.checkpoint_every_steps=100000", "evals={}"],
  )
  train.train(config, workdir, quiet=True)

mesh = sharding.make_mesh(config.mesh)
run = run_length(config)
trainer = Trainer(config, mesh, run.num_steps, run.steps_per_epoch)
ckpt = checkpointing.Checkpointer(workdir, keep=config.train.keep_checkpoints, async_save=False)
step, state, _ = ckpt.restore_latest(trainer.abstract_state())
ckpt.close()
pretrained = trainer.predictor(state)
random_init = trainer.predictor(trainer.init(config.seed))
print(f"{config.method.name} after {step} steps; {config.model.width}-wide, {config.model.depth}-deep ViT")

# %% [markdown]
# ## Linear probe and k-NN on frozen features
# Both read each clip's mean output token: a logistic regression fitted on `num_train` labelled
# clips, and a cosine-similarity vote of the 20 nearest of them. Accuracies are on the test split.

# %%
from jvssl.evaluate import common

with config.unlocked():
  config.evals = ConfigDict(
    {
      "knn": config_lib.eval_config("knn", num_train=S["num_train"]),
      "linear_probe": config_lib.eval_config("linear_probe", num_train=S["num_train"], steps=S["probe_steps"]),
    }
  )
columns = {
  "random init": common.run(config, random_init, mesh),
  config.method.name: common.run(config, pretrained, mesh),
}
print(common.comparison_table(columns))

# %% [markdown]
# ## Retrieval examples and the embedding map
# `jvssl.evaluate.pictures` draws them (as `python -m jvssl.main --pictures` does): each test clip
# (left) with its 5 nearest training clips, framed green when of its class; and a t-SNE of the
# test clips' embeddings, one colour per class.

# %%
from PIL import Image

from jvssl.evaluate import pictures

cfg = pictures.default_config()
cfg.num_gallery, cfg.num_tsne = S["gallery"], 512
paths = pictures.draw(config, pretrained, mesh, workdir, cfg=cfg)
for name in ("retrieval", "tsne"):
  image = Image.open(paths[name])
  fig, ax = plt.subplots(figsize=(image.width / 100, image.height / 100))
  ax.imshow(np.asarray(image))
  ax.set_axis_off()
  ax.set_title(name, fontsize=9)
  plt.show()

# %% [markdown]
# ## Attention of the last block
# How much attention each tubelet receives in the encoder's last block, averaged over the heads and
# summed over every token that attends, laid over the clip (`pictures.received_attention`; the
# weights are recomputed from the block's own parameters, as the model never materialises them).

# %%
from jvssl.data import pipeline

ds, n = pipeline.eval_dataset(config, "test", config.eval.batch_size, limit=4)
clips = next(pipeline.numpy_batches(ds))["video"][:n]
encoder = pretrained.module().encoder
received = pictures.received_attention(pretrained, config, clips)  # [B, T', H', W']
pt, ph, pw = encoder.patch_size
maps = received.repeat(pt, 1).repeat(ph, 2).repeat(pw, 3)  # [B, T, H, W]
fig, axes = plt.subplots(2 * n, 1, figsize=(1.2 * clips.shape[1], 2.4 * n), squeeze=False)
for i in range(n):
  axes[2 * i, 0].imshow(np.concatenate(list(clips[i]), axis=1))
  axes[2 * i + 1, 0].imshow(np.concatenate(list(maps[i]), axis=1), cmap="inferno", vmin=0)
  axes[2 * i, 0].set_title(f"test clip {i}", fontsize=8, loc="left")
  axes[2 * i + 1, 0].set_title("attention received (last block)", fontsize=8, loc="left")
for ax in axes.ravel():
  ax.set_axis_off()
fig.tight_layout()
PICTURES = os.environ.get("JVSSL_NOTEBOOK_PICTURES", "")  # Set by the README's command to save the figure.
if PICTURES:
  os.makedirs(PICTURES, exist_ok=True)
  fig.savefig(os.path.join(PICTURES, "notebook_attention.png"), dpi=60)
plt.show()

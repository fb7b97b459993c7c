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
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jvssl/jvssl/blob/main/notebooks/05_import_and_finetune.ipynb)
#
# # Import PyTorch weights and fine-tune
#
# A VideoMAE saved by Hugging Face `transformers` becomes a jvssl checkpoint
# (`jvssl.tools.import_weights`), and a classifier is fine-tuned from its encoder on the synthetic
# shapes, as `configs/videomae_finetune_k400.py` fine-tunes on Kinetics-400. So that nothing is
# downloaded, the PyTorch model here is a small one with random weights, saved exactly as
# `save_pretrained` saves a published one; with a real checkpoint, point `HF_CHECKPOINT` at its
# `model.safetensors` and size the config to it. Without PyTorch the import is skipped and the
# classifier starts from `02_pretrain_small`'s encoder, or from scratch. From random weights and
# with the CPU settings' 100 steps the classifier stays near chance (12.5%); the point here is the
# path a real checkpoint takes.

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
# `RUNTIME = "cpu"`: a one-layer ViT of width 32 on 4x32x32 clips, fine-tuned for 100 steps;
# `"gpu"` or `"tpu"`: the `make demo` ViT (4 layers of width 128, 8x48x48 clips) for 300 steps.
# Both the imported model and the classifier take this shape.

# %%
RUNTIME = "cpu"
SETTINGS = {
  "cpu": dict(frames=4, size=32, tubelet=2, width=32, depth=1, heads=2, mlp=64, steps=100, train_subset=256),
  "gpu": dict(frames=8, size=48, tubelet=4, width=128, depth=4, heads=4, mlp=512, steps=300, train_subset=1024),
}
SETTINGS["tpu"] = SETTINGS["gpu"]
S = SETTINGS[RUNTIME]
WORKDIRS = os.environ.get("JVSSL_NOTEBOOK_WORKDIR", os.path.join(ROOT, "workdirs", "notebooks"))
HF_CHECKPOINT = ""  # A transformers VideoMAE's model.safetensors; "" makes a random stand-in below.
# The fields of a jvssl ViT that must match the imported model, as --config.x=v overrides.
SHAPE = [
  f"data.num_frames={S['frames']}",
  "data.frame_stride=2",
  f"data.image_size={S['size']}",
  f"model.patch_size=({S['tubelet']},8,8)",
  f"model.width={S['width']}",
  f"model.depth={S['depth']}",
  f"model.num_heads={S['heads']}",
  f"model.mlp_dim={S['mlp']}",
]

# %% [markdown]
# ## A PyTorch VideoMAE, saved as transformers saves it
# `VideoMAEForPreTraining` is the pretraining model (encoder and decoder), the layout of the
# published `MCG-NJU/videomae-*` checkpoints; `use_mean_pooling=False` is how they are saved.

# %%
import shutil
import warnings

from jvssl import config as config_lib, train

# tqdm's note, on importing transformers, that ipywidgets is missing: no progress bar is drawn here.
warnings.filterwarnings("ignore", message="IProgress not found")
HAVE_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "safetensors"))
if not HAVE_TORCH:
  print("PyTorch, transformers or safetensors is not installed: the import is skipped (pip install 'jvssl[convert]')")
elif not HF_CHECKPOINT:
  from jvssl.models import convert

  convert.load_torchvision()  # transformers imports torchvision when it is there; a CUDA-only build needs this.
  import torch
  import transformers

  torch.manual_seed(0)
  hf_config = transformers.VideoMAEConfig(
    image_size=S["size"],
    patch_size=8,
    num_frames=S["frames"],
    tubelet_size=S["tubelet"],
    hidden_size=S["width"],
    num_hidden_layers=S["depth"],
    num_attention_heads=S["heads"],
    intermediate_size=S["mlp"],
    decoder_hidden_size=32,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=128,
    use_mean_pooling=False,
  )
  from safetensors.torch import save_file

  os.makedirs(WORKDIRS, exist_ok=True)
  HF_CHECKPOINT = os.path.join(WORKDIRS, "05_hf_videomae.safetensors")
  # The file `save_pretrained` writes (model.safetensors), without its progress bar.
  save_file(transformers.VideoMAEForPreTraining(hf_config).state_dict(), HF_CHECKPOINT)
  print("saved", HF_CHECKPOINT)

# %% [markdown]
# ## Import into a jvssl checkpoint
# The weights go into the train state of a VideoMAE config of the same shape, saved as step 0 of a
# workdir: `python -m jvssl.tools.import_weights --from=hf_videomae --src=... --config=... --out=...`
# does the same from the command line. The report lists what was not mapped.

# %%
imported = os.path.join(WORKDIRS, "05_imported")
if HAVE_TORCH:
  from jvssl.tools import import_weights

  pretrain_config = config_lib.load(
    os.path.join(ROOT, "configs", "videomae_synthetic.py:runlocal"),
    SHAPE + ["method.decoder_width=32", "method.decoder_depth=1", "method.decoder_heads=2"],
  )
  shutil.rmtree(imported, ignore_errors=True)
  report = import_weights.import_weights("hf_videomae", HF_CHECKPOINT, pretrain_config, imported)
  print(f"imported {HF_CHECKPOINT} as step 0 of {imported}")
  print("\n".join(report) or "every array of the model was in the file, and every array of the file was used")
  init = imported
else:
  pretrained = os.path.join(WORKDIRS, "02_pretrain_small")
  init = pretrained if os.path.isdir(os.path.join(pretrained, "checkpoints")) else ""
  print("fine-tuning from", init or "a random initialisation")

# %% [markdown]
# ## Fine-tune
# `configs/videomae_finetune_k400.py:runlocal` is the K400 recipe on the synthetic shapes; its
# `init.checkpoint` loads the encoder (`init.what="encoder"`: the head is new). The `multiview`
# evaluator tests each video as 1 clip x 3 crops.

# %%
import matplotlib.pyplot as plt
import numpy as np

from jvssl.evaluate import common

config = config_lib.load(
  os.path.join(ROOT, "configs", "videomae_finetune_k400.py:runlocal"),
  SHAPE
  + [
    f"init.checkpoint={init}",
    f"train.num_steps={S['steps']}",
    "train.log_every_steps=10",
    "train.checkpoint_every_steps=100000",
    f"data.train_subset={S['train_subset']}",
    "data.batch_size=16",
    "evals.multiview.num_test=128",
  ],
)
workdir = os.path.join(WORKDIRS, "05_finetune")
shutil.rmtree(workdir, ignore_errors=True)  # A workdir with a checkpoint would resume instead.
scalars = notebook.Scalars()
result = train.train(config, workdir, writer=scalars)
columns = {"fine-tuned": common.run(config, result.trainer.predictor(result.state), result.trainer.mesh)}
print(common.comparison_table(columns))
history = [(s, row["train/loss"]) for s, row in scalars.rows if "train/loss" in row]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(*zip(*history))
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy")
ax.set_title(f"fine-tuning from {'imported weights' if HAVE_TORCH else init or 'scratch'}", fontsize=9)
plt.show()

# %% [markdown]
# ## Predictions on test clips
# The classifier's `logits` function, as evaluators call it, on a few clips of the test split.

# %%
from jvssl.data import pipeline, synthetic
from jvssl.evaluate import features

ds, n = pipeline.eval_dataset(config, "test", 8, limit=6)
batch = next(pipeline.numpy_batches(ds))
logits = features.jit_predict(result.trainer.predictor(result.state), "logits", config.data)({"video": batch["video"]})
predicted = np.asarray(logits).argmax(-1)
names = synthetic.CLASS_NAMES[config.data.synthetic.label]
fig, axes = plt.subplots(n, 1, figsize=(1.2 * config.data.num_frames, 1.3 * n), squeeze=False)
for i in range(n):
  axes[i, 0].imshow(np.concatenate(list(batch["video"][i]), axis=1))
  axes[i, 0].set_axis_off()
  right = predicted[i] == batch["label"][i]
  title = f"{names[batch['label'][i]]}: predicted {names[predicted[i]]}"
  axes[i, 0].set_title(title, fontsize=8, loc="left", color="green" if right else "red")
fig.tight_layout()
PICTURES = os.environ.get("JVSSL_NOTEBOOK_PICTURES", "")  # Set by the README's command to save the figure.
if PICTURES:
  os.makedirs(PICTURES, exist_ok=True)
  fig.savefig(os.path.join(PICTURES, "notebook_predictions.png"), dpi=60)
plt.show()

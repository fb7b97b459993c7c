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
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jvssl/jvssl/blob/main/notebooks/04_text_video.ipynb)
#
# # Train a tiny video-text model and query it in words
#
# jvssl's synthetic clips come with captions written from their ground truth ("a circle rises",
# "the box spins clockwise"). A video ViT and a text transformer learn a joint space by CLIP's
# contrastive loss (`configs/multimodal_synthetic.py:video_text`), with the loop of
# `python -m jvssl.main`; then a sentence you type ranks held-out clips, and the recipe's
# evaluators measure text-to-video retrieval and zero-shot classification on the held-out split.
#
# Plainly: with the CPU settings (a one-layer ViT of width 32, a minute of training from scratch)
# the model does not learn to tell captions apart. Its loss falls to, and stays at, what a model
# that scores every caption alike gets, and the retrieval and zero-shot numbers stay at chance,
# as its random initialisation's do. What this notebook shows on a CPU is the path: captions to
# tokens, the two towers, a query in words, the metrics. `RUNTIME = "gpu"` trains the recipe's
# model (4 layers of width 128 on 8x48x48 clips) for longer. From scratch even that model's text
# tower settles on scoring every caption alike; started from a VideoMAE run on the same clips
# (`INIT` below, InternVideo's combination; `configs/multimodal_synthetic.py` gives both commands)
# it learns: the README's "Multimodal" table.

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
# `RUNTIME = "cpu"` is the recipe's `runlocal` shape (a one-layer ViT of width 32 on 4x32x32 clips,
# a one-layer text transformer of width 32 over the captions' bytes) for 200 steps of 32 clips,
# evaluated on 128 held-out clips; `"gpu"` or `"tpu"` is the recipe itself (4 layers of width 128
# on 8x48x48 clips, a 2-layer text transformer of width 128) for its 1500 steps, evaluated on 1024.
# `QUERY` is the sentence that ranks the held-out clips.

# %%
RUNTIME = "cpu"
SETTINGS = {
  "cpu": dict(
    arg=",runlocal",
    overrides=[
      "train.num_steps=200",
      "data.batch_size=32",
      "data.synthetic.num_train=1024",
      "data.synthetic.num_test=128",
    ],
  ),
  "gpu": dict(arg="", overrides=[]),
}
SETTINGS["tpu"] = SETTINGS["gpu"]
S = SETTINGS[RUNTIME]
QUERY = "a circle rises"
INIT = ""  # A VideoMAE workdir (configs/multimodal_synthetic.py:videomae) to start the video tower from.

# %%
import jax
import matplotlib.pyplot as plt
import numpy as np

from jvssl import config as config_lib, train
from jvssl.data import pipeline, tokenizers

config = config_lib.load(
  os.path.join(ROOT, "configs", f"multimodal_synthetic.py:video_text{S['arg']}"),
  # Retrieval among all held-out clips, the ones zero-shot classifies, so both read one set of features.
  S["overrides"] + ["train.log_every_steps=10", "evals.text_to_video.num_examples=0", f"init.checkpoint={INIT}"],
)
tokenizer = tokenizers.build(config.data.text)
print(jax.devices())
print("video model:", {k: config.model[k] for k in ("width", "depth", "num_heads", "patch_size")})
print("text model:", {k: config.method.text[k] for k in ("width", "depth", "num_heads", "pooling")})
print("joint space:", config.method.embed_dim, "dimensions; tokenizer:", config.data.text.tokenizer)

# %% [markdown]
# ## Clips and their captions
# Each synthetic video has `data.synthetic.num_captions` captions that name its shape and its
# motion in different words ("circle", "disk", "round dot"; "rises", "moves up"); a training batch
# carries one of them per clip as token ids (`"text"`: bos, the caption's UTF-8 bytes, eos,
# padding), which the tokenizer decodes back. Colours, size and speed are drawn afresh for every
# clip, so only shape and motion tie a caption to its clip.

# %%
batch = next(pipeline.numpy_batches(pipeline.train_dataset(config)))
print("text:", batch["text"].shape, batch["text"].dtype, "first row:", batch["text"][0, :24], "...")
fig, axes = plt.subplots(6, 1, figsize=(1.2 * config.data.num_frames, 7.2), squeeze=False)
for i, ax in enumerate(axes[:, 0]):
  ax.imshow(np.concatenate(list(batch["video"][i]), axis=1))
  ax.set_title(tokenizer.decode(batch["text"][i]), fontsize=8, loc="left")
  ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Train
# The loop writes scalars to a writer (TensorBoard's in `python -m jvssl.main`); here a list keeps
# them for the loss curve. The run stays in memory (no workdir, no checkpoints). The loss is CLIP's
# symmetric cross-entropy over the batch's clip-caption similarities: a model that scores every
# caption of the batch alike gets log(batch size), the dashed line; learning shows as the loss
# going below it. The first steps' fall, down to that line, is the random initialisation's
# preferences being unlearned, not captions being told apart.

# %%
scalars = notebook.Scalars()
result = train.train(config, None, writer=scalars)
history = [(s, row["train/loss"]) for s, row in scalars.rows if "train/loss" in row]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(*zip(*history), label="training loss")
ax.axhline(np.log(config.data.batch_size), color="grey", linestyle="--", label="log(batch size)")
ax.set_xlabel("step")
ax.set_ylabel("InfoNCE")
ax.set_title(f"video_text, {config.train.num_steps} steps of {config.data.batch_size} clips", fontsize=9)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Query in words
# The sentence is tokenised as the captions are and embedded by the text tower (`embed_text`); every
# held-out clip by the video tower (`embed_video_joint`). Both give unit vectors in the joint space,
# so a clip's score is its cosine similarity with the sentence. The five best clips are shown with
# their own (first) captions: with the CPU settings they match the query only by chance.

# %%
from jvssl.evaluate import features

trained = result.trainer.predictor(result.state)
embed_video = features.jit_predict(trained, "embed_video_joint", config.data)
embed_text = features.jit_predict(trained, "embed_text", config.data)
ds, n = pipeline.eval_dataset(config, "test", config.eval.batch_size)
clips, texts, video_emb = [], [], []
for b in pipeline.numpy_batches(ds):
  clips.append(b["video"])
  texts.append(b["text"])
  video_emb.append(np.asarray(embed_video({"video": b["video"]})))
clips, texts, video_emb = (np.concatenate(x)[:n] for x in (clips, texts, video_emb))  # Padding dropped.

query = np.asarray(embed_text({"text": tokenizers.encode_padded(tokenizer, [QUERY], config.data.text.max_len)}))[0]
scores = video_emb @ query  # [n]
top = np.argsort(-scores)[:5]
fig, axes = plt.subplots(len(top), 1, figsize=(1.2 * config.data.num_frames, 1.3 * len(top)), squeeze=False)
for rank, (i, ax) in enumerate(zip(top, axes[:, 0]), 1):
  ax.imshow(np.concatenate(list(clips[i]), axis=1))
  ax.set_title(f"{rank}. {tokenizer.decode(texts[i])} (cosine {scores[i]:.3f})", fontsize=8, loc="left")
  ax.set_axis_off()
fig.suptitle(f'"{QUERY}": top 5 of {n} held-out clips', fontsize=9)
fig.tight_layout()
PICTURES = os.environ.get("JVSSL_NOTEBOOK_PICTURES", "")  # Set by the README's command to save the figure.
if PICTURES:
  os.makedirs(PICTURES, exist_ok=True)
  fig.savefig(os.path.join(PICTURES, "notebook_text_query.png"), dpi=60)
plt.show()

# %% [markdown]
# ## Text-to-video retrieval and zero-shot classification
# The recipe's evaluators, as `python -m jvssl.main` runs them, on the trained model and on its
# random initialisation. `text_to_video` (`paired_retrieval`): each held-out clip's caption must find
# its own clip among all of them; recall@k is the fraction found in the top k, chance k / n.
# `zero_shot`: each clip takes the shape whose name, written into the recipe's prompts, it is most
# similar to; no label was used in training, chance is 1 / 8. Below them, the same protocol for
# motion (`zero_shot.class_embeddings` and `zero_shot_accuracy` on the clips embedded above): the
# captions name both, and motion is what no single frame shows.

# %%
from jvssl.data import captions
from jvssl.evaluate import common, zero_shot

names = ["text_to_video", "zero_shot"]
mesh = result.trainer.mesh
columns = {
  "random init": common.run(config, result.trainer.predictor(result.trainer.init(config.seed)), mesh, names=names),
  "video_text": common.run(config, trained, mesh, names=names),
}
print(common.comparison_table(columns))
print(f"chance: recall@1 {1 / n:.1%}, recall@5 {5 / n:.1%}, recall@10 {10 / n:.1%} of {n} clips")

source = pipeline.make_source(config.data, "test")
_, motion = source.kinds(np.arange(n))  # Each held-out video's motion id, as its captions say it.
motions = captions.class_phrases("motion", source.num_classes)
classes = zero_shot.class_embeddings(trained, config.data, motions, list(config.evals.zero_shot.templates))
by_motion = zero_shot.zero_shot_accuracy(video_emb, np.asarray(motion), classes)
print(f"zero-shot motion ({', '.join(motions)}): {by_motion['accuracy']:.1%}, chance {by_motion['chance']:.1%}")

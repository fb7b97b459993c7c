"""Cross-modal methods on jvssl's synthetic data, whose videos come with captions written from their ground truth
("a circle rises", "the box spins clockwise"; jvssl/data/captions.py) and a soundtrack tied to what happens
(pitch and timbre from the shape, a glide, fade or tremolo from the motion; jvssl/data/audio.py).

Version 2 of the set (every clip's colours, size and speed drawn afresh, so shape and motion are all two
clips of a video share) at the demo's geometry (configs/ssl_synthetic.py); a 2-layer text transformer over
bytes, a 2-layer audio transformer over 1.28 s log-mel spectrograms. Evaluated by text-to-video retrieval
on held-out videos, zero-shot classification from class names, and the probes every synthetic method gets.
Variants: `:video_text` (CLIP's symmetric InfoNCE), `:xclip` (the same with X-CLIP's multi-grained
similarity), `:mil_nce` (3 candidate captions per clip),
`:video_audio`, `:video_text_audio` (the three modalities in one run), `:multimodal_mae` (video tubes and
caption words masked together), `:internvideo` (VideoMAE and video-text contrast summed on one encoder, the
`combined` method; `,text_weight=W` weighs the contrast), `:videomae` (the same data, video alone); add
`,runlocal` for a CPU smoke run. `,init=WORKDIR` starts the video tower from another run's encoder
(`--config.init.checkpoint`).

From scratch, on a CPU's budget, video-text contrast does not get going: the text tower's captions start alike
(mean cosine 0.8-0.95 between different captions), the clips' random features say little about shape and motion,
and within 50-150 steps the text tower gives every caption the same embedding (mean cosine > 0.99), the loss at
log(batch) (seen at lr 1e-4 to 3e-3, batch 32 and 64, temperature 0.07 to 1, learned or fixed, mean pooling
of the text, and under `:internvideo` from scratch, whose masked objective shapes the video tower too late).
Started from a VideoMAE run on the same clips, as InternVideo combines a masked-modelling encoder with a
video-text one, it learns (README, "Multimodal"); `:internvideo` from the same start keeps training the masked
objective beside the contrast (InternVideo2's second stage and UMT train one encoder on both):
  python -m jvssl.main --config=configs/multimodal_synthetic.py:videomae --workdir=/tmp/mm_videomae \
      --config.train.num_steps=1000
  python -m jvssl.main --config=configs/multimodal_synthetic.py:video_text,init=/tmp/mm_videomae \
      --workdir=/tmp/mm_video_text --config.train.num_steps=1000
  python -m jvssl.main --config=configs/multimodal_synthetic.py:internvideo,init=/tmp/mm_videomae \
      --workdir=/tmp/mm_internvideo --config.train.num_steps=1000
"""

import importlib.util
import os

from jvssl.config import base_config, eval_config, parse_arg

METHODS = (
  "video_text",
  "xclip",
  "mil_nce",
  "internvideo",
  "video_audio",
  "video_text_audio",
  "multimodal_mae",
  "videomae",
)
_SHARED = ("seed", "data", "model", "optimizer", "schedule", "train", "eval", "evals")


def _ssl_config(arg: str):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ssl_synthetic.py")
  spec = importlib.util.spec_from_file_location("jvssl_ssl_synthetic", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _masked_fields(m, masked, c):
  """The demo's VideoMAE fields into method config m; multimodal_mae keeps its text fields' defaults."""
  for key, value in masked.items():
    if key != "name":
      m[key] = value
  if "text" in m:  # multimodal_mae: the text tower of late fusion, as the contrastive variants'.
    m.text.width, m.text.depth, m.text.num_heads, m.text.max_len = 128, 2, 4, c.data.text.max_len


def _contrastive_fields(m, arg, c):
  """The cross-modal towers' fields into method config m."""
  m.embed_dim = 128
  t = m.text
  t.width, t.depth, t.num_heads, t.mlp_ratio, t.max_len = 128, 2, 4, 4.0, c.data.text.max_len
  m.audio.width, m.audio.depth, m.audio.num_heads = 128, 2, 4
  if arg.method == "xclip":
    m.similarity = "multi_grained"
  if arg.method == "mil_nce":
    m.loss = "mil_nce"
    c.data.text.num_captions = 3
  c.optimizer.lr = 1e-3


def get_config(arg=None):
  arg = parse_arg(arg, method="video_text", init="", runlocal=False, text_weight=1.0)
  if arg.method not in METHODS:
    raise ValueError(f"unknown variant {arg.method!r}; one of {', '.join(METHODS)}")
  # The README's multimodal figures were measured with every clip's geometry drawn afresh too.
  ssl = _ssl_config("videomae,version=2,shared_geometry=False" + (",runlocal" if arg.runlocal else ""))
  method = {"mil_nce": "video_text", "xclip": "video_text", "internvideo": "combined"}.get(arg.method, arg.method)
  c = base_config(model="vit", method=method)
  for key in _SHARED:
    c[key] = ssl[key].copy_and_resolve_references() if key != "seed" else ssl[key]
  c.unlock()  # The copied sections come locked.
  # The demo's lr, at which the README's figures of the masked methods were measured (ssl_synthetic.py's version 2
  # trains VideoMAE at 1e-3); the contrastive methods set their own below.
  c.optimizer.lr = 1.5e-3
  c.data.augment.flip = False  # A mirror image would turn "moves right" into "moves left".
  # The longest synthetic caption is 70 bytes.
  c.data.text.tokenizer, c.data.text.max_len = "bytes", 72
  a = c.data.audio
  a.enabled = arg.method in ("video_audio", "video_text_audio")
  # 1.28 s at 16 kHz, 32 mel bins: a 128 x 32 spectrogram, 16 patches of 16 x 16.
  a.seconds, a.num_mel_bins = 1.28, 32
  if method == "combined":  # InternVideo: masked modelling and video-text contrast train one encoder together.
    c.method.methods, c.method.weights = ("videomae", "video_text"), (1.0, arg.text_weight)
    _masked_fields(c.method.videomae, ssl.method, c)
    _contrastive_fields(c.method.video_text, arg, c)
  elif method in ("videomae", "multimodal_mae"):
    _masked_fields(c.method, ssl.method, c)
  else:
    _contrastive_fields(c.method, arg, c)
  # InternVideo's combination: the video tower starts from a masked-modelling run (its encoder only).
  c.init.checkpoint = arg.init

  contrastive = c.method.video_text if method == "combined" else c.method  # The towers' fields, if any.
  towers = contrastive.get("towers", ())
  if "text" in towers:
    c.evals.text_to_video = eval_config("paired_retrieval", query="text", gallery="video_joint", num_examples=1024)
    c.evals.zero_shot = eval_config("zero_shot", templates=("a {}", "a video of a shape that {}"))
  if "audio" in towers:
    c.evals.audio_to_video = eval_config("paired_retrieval", query="audio", gallery="video_joint", num_examples=1024)
  if arg.runlocal:
    if method == "multimodal_mae":
      c.method.text.width, c.method.text.depth, c.method.text.num_heads = 32, 1, 2
    elif method != "videomae":
      contrastive.text.width, contrastive.text.depth = 32, 1
      contrastive.text.num_heads, contrastive.text.mlp_ratio = 2, 2.0
      contrastive.audio.width, contrastive.audio.depth, contrastive.audio.num_heads = 32, 1, 2
      contrastive.embed_dim = 32
    for name in ("text_to_video", "audio_to_video"):
      if name in c.evals:
        c.evals[name].num_examples = 32
  c.lock()
  return c

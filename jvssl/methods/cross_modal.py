"""Cross-modal agreement: a video tower and a text and/or audio tower trained to agree on which goes with which clip.

Each pair (video, text) and (video, audio) is contrasted over the global batch's similarity matrix of
projected, normalised embeddings, VATT's pairing (text and audio meet through the video):
  "infonce": CLIP's symmetric cross-entropy (video -> other and other -> video), with a learned temperature
    (logit scale initialised to 1 / temperature, capped at 100 as CLIP does).
  "mil_nce" (text only): MIL-NCE (Miech et al., CVPR 2020): data.text.num_captions = P captions per clip are
    all candidate positives; each clip's loss is -log(sum of its P positives / (that + every pairing of the
    clip with other clips' captions + of its captions with other clips)), for loosely aligned captions such
    as narrations.
With `similarity="multi_grained"` (text only) the video-text score is X-CLIP's (Ma et al., ACM MM 2022): the
mean of four similarities, video-sentence, video-word, frame-sentence and frame-word, where a similarity
between a whole and parts, or parts and parts, is reduced by attention over the similarity matrix (AOSM:
a softmax(s / 0.01)-weighted sum, X-CLIP's released temperature), frame-word in both orders averaged. Frames
are the encoder's tokens averaged over space per time step, words the text tower's tokens, both through the
projections of the whole. (X-CLIP's released code also learns a matrix on each similarity; not here.)
Methods: "video_text" (towers: text), "video_audio" (audio), "video_text_audio" (both, one run).
Evaluation reads `embed_video` (the encoder's pooled features, what probes use) and the joint space:
`embed_video_joint`, `embed_text`, `embed_audio` (retrieval across towers, zero-shot classification).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jvssl import models, registry, sharding
from jvssl.data import audio as audio_data, tokenizers
from jvssl.methods import losses
from jvssl.methods.base import Inputs, Method, embed_video, video_tokens
from jvssl.models import audio as audio_model, text as text_model

TOWERS = ("text", "audio")


class CrossModalModel(nnx.Module):
  def __init__(self, config, *, rngs: nnx.Rngs):
    m = config.method
    kw = models.dtype_kw(config)
    self.encoder = models.build(config, rngs=rngs)
    self.video_proj = nnx.Linear(self.encoder.width, m.embed_dim, use_bias=False, rngs=rngs, **kw)
    if "text" in m.towers:
      tokenizer = tokenizers.build(config.data.text)
      self.text = text_model.TextTransformer(
        m.text, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, rngs=rngs, **kw
      )
      self.text_proj = nnx.Linear(self.text.width, m.embed_dim, use_bias=False, rngs=rngs, **kw)
    if "audio" in m.towers:
      frames, mels = audio_data.spectrogram_shape(config.data.audio)
      self.audio = audio_model.AudioTransformer(m.audio, num_frames=frames, num_mel_bins=mels, rngs=rngs, **kw)
      self.audio_proj = nnx.Linear(self.audio.width, m.embed_dim, use_bias=False, rngs=rngs, **kw)
    self.logit_scale = nnx.Param(jnp.full((len(m.towers),), np.log(1.0 / m.temperature), jnp.float32))

  def joint_video(self, video, rng=None):
    """Normalised joint-space embeddings [B, E] (float32) of clips [B, T, H, W, 3]."""
    return losses.l2_normalize(self.video_proj(self.encoder(video, rng=rng)["pooled"]))

  def joint_text(self, tokens, rng=None):
    """Normalised joint-space embeddings [..., E] (float32) of token ids [..., L]."""
    lead = tokens.shape[:-1]
    pooled = self.text(tokens.reshape(-1, tokens.shape[-1]), rng=rng)["pooled"]
    return losses.l2_normalize(self.text_proj(pooled)).reshape(*lead, -1)

  def joint_video_parts(self, video, rng=None):
    """(whole [B, E], frames [B, T', E]): normalised joint-space embeddings of the clips and of each time step
    (the encoder's tokens averaged over space, normed as the pooled features are)."""
    out = self.encoder(video, rng=rng)
    tokens = out["tokens"]
    frames = tokens.reshape(tokens.shape[0], self.encoder.grid[0], -1, tokens.shape[-1]).mean(axis=2)
    if getattr(self.encoder, "final_norm", None) == "pooled":
      frames = self.encoder.norm(frames)
    return losses.l2_normalize(self.video_proj(out["pooled"])), losses.l2_normalize(self.video_proj(frames))

  def joint_text_parts(self, tokens, rng=None):
    """(whole [B, E], words [B, L, E], word mask [B, L]) in the joint space, of token ids [B, L]."""
    out = self.text(tokens, rng=rng)
    words = out["tokens"] if self.text.proj is None else self.text.proj(out["tokens"])
    return (
      losses.l2_normalize(self.text_proj(out["pooled"])),
      losses.l2_normalize(self.text_proj(words)),
      out["mask"],
    )

  def joint_audio(self, spectrogram, rng=None):
    """Normalised joint-space embeddings [B, E] (float32) of log-mel spectrograms [B, frames, mels].

    Each spectrogram is standardised on its own: a clip's loudness is a recording condition, not content."""
    mean = spectrogram.mean(axis=(1, 2), keepdims=True)
    std = spectrogram.std(axis=(1, 2), keepdims=True)
    pooled = self.audio((spectrogram - mean) / (std + 1e-5), rng=rng)["pooled"]
    return losses.l2_normalize(self.audio_proj(pooled))


def clip_loss(video: jax.Array, other: jax.Array, scale: jax.Array) -> tuple[jax.Array, jax.Array]:
  """CLIP's symmetric InfoNCE: video, other [B, E] unit rows, row i of each from clip i; scale: the logit scale.

  Returns (loss, video -> other top-1 accuracy within the batch)."""
  rows, keys = sharding.constrain(video, ("batch", None)), sharding.constrain(other, (None, None))
  return similarity_loss(rows @ keys.T, scale)  # [B, B]: this device's clips against the global batch's rows.


def mil_nce_loss(video: jax.Array, text: jax.Array, scale: jax.Array) -> tuple[jax.Array, jax.Array]:
  """MIL-NCE: video [B, E], text [B, P, E] unit rows, text[i] the P candidate captions of clip i.

  Returns (loss, top-1 accuracy of the clips' best caption within the batch)."""
  b = text.shape[0]
  sims = scale * jnp.einsum("ie,jpe->ijp", video, text)  # [B, B, P]
  own = jnp.eye(b, dtype=bool)[:, :, None]
  positives = jax.nn.logsumexp(jnp.where(own, sims, -jnp.inf), axis=(1, 2))
  # Clip i against the captions of other clips, and the captions of i against other clips.
  with_other_captions = jax.nn.logsumexp(jnp.where(own, -jnp.inf, sims), axis=(1, 2))
  with_other_clips = jax.nn.logsumexp(jnp.where(own, -jnp.inf, sims), axis=(0, 2))
  everything = jnp.logaddexp(positives, jnp.logaddexp(with_other_captions, with_other_clips))
  accuracy = jnp.mean(jnp.argmax(sims.max(axis=2), axis=1) == jnp.arange(b))
  return jnp.mean(everything - positives), accuracy


AOSM_TEMPERATURE = 1e-2


def aosm(sims: jax.Array, mask, axis: int) -> jax.Array:
  """Attention over a similarity matrix: the softmax(sims / AOSM_TEMPERATURE)-weighted sum of sims along axis,
  over the entries where mask (broadcast to sims) is True."""
  mask = jnp.broadcast_to(mask, sims.shape)
  weights = jax.nn.softmax(jnp.where(mask, sims / AOSM_TEMPERATURE, -jnp.inf), axis=axis)
  return jnp.sum(jnp.where(mask, weights * sims, 0.0), axis=axis)


def multi_grained_similarity(video, frames, sentence, words, word_mask) -> jax.Array:
  """X-CLIP's similarity [Bv, Bt] of every clip with every caption: video [Bv, E], frames [Bv, F, E], sentence
  [Bt, E], words [Bt, W, E] unit rows; word_mask [Bt, W] (False: padding)."""
  video_sentence = video @ sentence.T
  video_word = aosm(jnp.einsum("ve,twe->vtw", video, words), word_mask[None], axis=2)
  frame_sentence = aosm(jnp.einsum("vfe,te->vtf", frames, sentence), True, axis=2)
  frame_word = jnp.einsum("vfe,twe->vtfw", frames, words)
  words_first = aosm(aosm(frame_word, word_mask[None, :, None], axis=3), True, axis=2)
  frames_first = aosm(aosm(frame_word, True, axis=2), word_mask[None], axis=2)
  return (video_sentence + video_word + frame_sentence + (words_first + frames_first) / 2) / 4


def similarity_loss(sims: jax.Array, scale: jax.Array) -> tuple[jax.Array, jax.Array]:
  """CLIP's symmetric cross-entropy over a given similarity matrix [B, B] (row i and column i: clip i)."""
  logits = scale * sims
  labels = jnp.arange(logits.shape[0])
  forward = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits, 1), labels[:, None], 1))
  backward = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits, 0), labels[None, :], 0))
  return (forward + backward) / 2, jnp.mean(jnp.argmax(logits, 1) == labels)


def embed_video_joint(model, batch):
  return model.joint_video(batch["video"])


def embed_text(model, batch):
  """batch["text"] [B, L] (or [B, N, L]: the first caption) -> [B, E] in the joint space."""
  tokens = batch["text"]
  return model.joint_text(tokens if tokens.ndim == 2 else tokens[:, 0])


def embed_audio(model, batch):
  return model.joint_audio(batch["audio"])


@registry.METHODS.register("video_text")
class CrossModal(Method):
  TOWERS: tuple[str, ...] = ("text",)

  @classmethod
  def default_config(cls) -> ConfigDict:
    return ConfigDict(
      {
        "towers": cls.TOWERS,  # Which of TOWERS the video is contrasted with.
        "loss": "infonce",  # "infonce" (CLIP) or, for text, "mil_nce" (data.text.num_captions candidates).
        # Of video and text under "infonce": "global" (pooled embeddings, CLIP) or "multi_grained" (X-CLIP).
        "similarity": "global",
        "embed_dim": 256,  # The joint space.
        "temperature": 0.07,  # Initial; learned as CLIP does unless learn_temperature is False.
        "learn_temperature": True,
        "max_logit_scale": 100.0,
        "weights": (1.0,) * len(cls.TOWERS),  # Of each tower's loss.
        "text": text_model.default_config(),
        "audio": audio_model.AudioTransformer.default_config(),
      }
    )

  def inputs(self) -> Inputs:
    return Inputs(modalities=("video",) + tuple(self.config.method.towers))

  def build(self, rngs: nnx.Rngs) -> nnx.Module:
    m, data = self.config.method, self.config.data
    unknown = [t for t in m.towers if t not in TOWERS]
    if unknown or not m.towers:
      raise ValueError(f"method.towers must be a non-empty subset of {TOWERS}, not {tuple(m.towers)}")
    if len(m.weights) != len(m.towers):
      raise ValueError(f"method.weights {tuple(m.weights)} must give one weight per tower {tuple(m.towers)}")
    if m.loss not in ("infonce", "mil_nce"):
      raise ValueError(f"method.loss must be 'infonce' or 'mil_nce', not {m.loss!r}")
    if m.similarity not in ("global", "multi_grained"):
      raise ValueError(f"method.similarity must be 'global' or 'multi_grained', not {m.similarity!r}")
    if m.similarity == "multi_grained" and (m.loss != "infonce" or "text" not in m.towers):
      raise ValueError("method.similarity 'multi_grained' (X-CLIP) scores video against text with loss 'infonce'")
    if m.similarity == "multi_grained" and self.config.model.name != "vit":
      raise ValueError("method.similarity 'multi_grained' (X-CLIP) reads a ViT's frame tokens: use model.name 'vit'")
    if m.loss == "mil_nce" and data.text.num_captions < 2:
      raise ValueError("method.loss 'mil_nce' needs data.text.num_captions >= 2 candidate captions per clip")
    if "text" in m.towers and m.text.max_len < data.text.max_len:
      raise ValueError(f"method.text.max_len {m.text.max_len} is shorter than data.text.max_len {data.text.max_len}")
    if "audio" in m.towers and not data.audio.enabled:
      raise ValueError("an audio tower needs the clips' audio: set data.audio.enabled=True")
    return CrossModalModel(self.config, rngs=rngs)

  def loss(self, model, batch, rng, step):
    m = self.config.method
    rngs = jax.random.split(rng, 1 + len(m.towers))
    if m.similarity == "multi_grained":
      video, frames = model.joint_video_parts(batch["video"], rng=rngs[0])
    else:
      video = model.joint_video(batch["video"], rng=rngs[0])
    # A fixed temperature is the config's, not the parameter's: weight decay would still shrink the parameter.
    log_scale = model.logit_scale.value if m.learn_temperature else jnp.full((len(m.towers),), -np.log(m.temperature))
    scales = jnp.minimum(jnp.exp(log_scale), m.max_logit_scale)
    total, metrics = 0.0, {}
    for i, (tower, weight) in enumerate(zip(m.towers, m.weights)):
      if tower == "text" and m.similarity == "multi_grained":
        tokens = batch["text"] if batch["text"].ndim == 2 else batch["text"][:, 0]
        sentence, words, word_mask = model.joint_text_parts(tokens, rng=rngs[1 + i])
        loss, accuracy = similarity_loss(multi_grained_similarity(video, frames, sentence, words, word_mask), scales[i])
      elif tower == "text":
        text = model.joint_text(batch["text"], rng=rngs[1 + i])
        if m.loss == "mil_nce":
          loss, accuracy = mil_nce_loss(video, text, scales[i])
        else:
          loss, accuracy = clip_loss(video, text if text.ndim == 2 else text[:, 0], scales[i])
      else:
        loss, accuracy = clip_loss(video, model.joint_audio(batch["audio"], rng=rngs[1 + i]), scales[i])
      total += weight * loss
      metrics |= {f"{tower}_loss": loss, f"{tower}_batch_accuracy": accuracy, f"{tower}_logit_scale": scales[i]}
    return total, metrics

  def predict_fns(self):
    fns = {"embed_video": embed_video, "video_tokens": video_tokens, "embed_video_joint": embed_video_joint}
    if "text" in self.config.method.towers:
      fns["embed_text"] = embed_text
    if "audio" in self.config.method.towers:
      fns["embed_audio"] = embed_audio
    return fns


@registry.METHODS.register("video_audio")
class VideoAudio(CrossModal):
  TOWERS = ("audio",)


@registry.METHODS.register("video_text_audio")
class VideoTextAudio(CrossModal):
  TOWERS = ("text", "audio")

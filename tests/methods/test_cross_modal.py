"""Cross-modal methods (jvssl/methods/cross_modal.py, multimodal_mae.py): the losses against direct
computations, the captions and audio the data gives them, zero-shot scoring, and every variant of
configs/multimodal_synthetic.py learning on one batch (in one subprocess, tests/methods/one_batch.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from flax import nnx

from jvssl import config as config_lib, registry
from jvssl.data import audio, captions, pipeline, tokenizers
from jvssl.evaluate import zero_shot
from jvssl.methods import cross_modal, multimodal_mae
from jvssl.methods.base import Inputs
from jvssl.trainer import run_length
from tests.methods import one_batch


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_clip_loss_is_the_symmetric_cross_entropy():
  rng = np.random.default_rng(0)
  v, t = _unit(rng.normal(size=(6, 4))), _unit(rng.normal(size=(6, 4)))
  logits = 5.0 * v @ t.T
  log_softmax = lambda x, axis: x - np.log(np.exp(x).sum(axis, keepdims=True))
  expected = -(np.diag(log_softmax(logits, 1)).mean() + np.diag(log_softmax(logits, 0)).mean()) / 2
  loss, _ = cross_modal.clip_loss(v.astype(np.float32), t.astype(np.float32), 5.0)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_multi_grained_similarity_reduces_to_clips_with_one_frame_and_one_word():
  rng = np.random.default_rng(0)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  video, sentence = unit(rng.normal(size=(3, 8))), unit(rng.normal(size=(4, 8)))
  # One frame, the clip itself; one real word, the sentence itself, then padding that would score 1.0.
  words = np.concatenate([sentence[:, None], np.repeat(video[:1, None], 4, axis=0)], axis=1)
  mask = np.array([[True, False]] * 4)
  got = cross_modal.multi_grained_similarity(video, video[:, None], sentence, words, mask)
  np.testing.assert_allclose(got, video @ sentence.T, atol=1e-6)


def test_aosm_weights_the_best_match_and_skips_padding():
  sims = np.array([[0.9, 0.1, 0.95]])
  # At temperature 0.01 the 0.9 outweighs the 0.1 by e^80; the masked 0.95 has no weight.
  got = cross_modal.aosm(sims, np.array([[True, True, False]]), axis=1)
  np.testing.assert_allclose(got, [0.9], atol=1e-6)


def test_mil_nce_matches_its_formula():
  rng = np.random.default_rng(1)
  b, p = 5, 3
  v, t = _unit(rng.normal(size=(b, 4))), _unit(rng.normal(size=(b, p, 4)))
  s = 2.0 * np.einsum("ie,jpe->ijp", v, t)
  expected = []
  for i in range(b):
    positive = np.exp(s[i, i]).sum()
    negative = sum(np.exp(s[i, j]).sum() + np.exp(s[j, i]).sum() for j in range(b) if j != i)
    expected.append(-np.log(positive / (positive + negative)))
  loss, _ = cross_modal.mil_nce_loss(v.astype(np.float32), t.astype(np.float32), 2.0)
  np.testing.assert_allclose(float(loss), np.mean(expected), rtol=1e-5)


def test_word_mask_masks_whole_words_and_never_specials():
  tok = tokenizers.build(config_lib.data_defaults().text)
  ids = tokenizers.encode_padded(tok, ["a disk moves right", "the box grows"], 32)
  special = (ids == tok.pad_id) | (ids == tok.bos_id) | (ids == tok.eos_id)
  space = tok.encode(" ")[0]
  for seed in range(5):
    mask = np.asarray(multimodal_mae.word_mask(jax.random.key(seed), ids, 0.5, space, special))
    assert not (mask & (special | (ids == space))).any()
    for row, m in zip(ids, mask):
      assert m.any()  # At least one word per caption.
      words = np.cumsum(row == space)
      for w in np.unique(words[m]):  # A word is masked whole or not at all.
        letters = (words == w) & (row != space) & ~np.isin(row, [tok.pad_id, tok.bos_id, tok.eos_id])
        assert m[letters].all()


def test_synthetic_captions_say_the_shape_and_motion():
  c = config_lib.load("configs/multimodal_synthetic.py:mil_nce,runlocal")
  tok = tokenizers.build(c.data.text)
  ds = pipeline.train_dataset(c, inputs=Inputs(modalities=("video", "text", "label")))
  batch = next(ds.as_numpy_iterator())
  assert batch["text"].shape == (c.data.batch_size, 3, c.data.text.max_len)
  source = pipeline.make_source(c.data, "train")
  for k in range(4):
    # The training order's k-th video is found again through its label: check its captions name its kinds.
    texts = [tok.decode(t) for t in batch["text"][k]]
    assert all(any(w in text for w in captions.SHAPE_WORDS[batch["label"][k]]) for text in texts), texts
  assert source.class_names == [w[0] for w in captions.SHAPE_WORDS[: c.data.synthetic.num_classes]]
  # Evaluation reads the first caption, the same every time.
  first = [next(pipeline.eval_dataset(c, "test", 8)[0].as_numpy_iterator())["text"] for _ in range(2)]
  np.testing.assert_array_equal(first[0], first[1])


def test_audio_reaches_the_batch_as_a_log_mel_spectrogram():
  c = config_lib.load("configs/multimodal_synthetic.py:video_audio,runlocal")
  ds = pipeline.train_dataset(c, inputs=Inputs(modalities=("video", "audio")))
  batch = next(ds.as_numpy_iterator())
  assert batch["audio"].shape == (c.data.batch_size,) + audio.spectrogram_shape(c.data.audio)
  assert np.isfinite(batch["audio"]).all() and batch["audio"].std() > 0.1
  assert "text" not in batch


def test_zero_shot_scores_each_clip_against_every_class():
  classes = np.eye(3, dtype=np.float32)
  video = np.array([[1, 0.1, 0], [0, 0, 2], [0.2, 1, 0], [0, 1, 0.1]], np.float32)
  out = zero_shot.zero_shot_accuracy(video, np.array([0, 2, 1, 2]), classes)
  assert out == {"accuracy": 0.75, "chance": pytest.approx(1 / 3)}


def test_a_caption_free_source_gives_the_empty_caption():
  tok = tokenizers.build(config_lib.data_defaults().text)
  text = config_lib.data_defaults().text
  example = pipeline._with_text(
    {"caption": tf.constant([], tf.string)}, text, tok, tf.constant([1, 2], tf.int64), train=True
  )
  ids = example["text"].numpy()
  assert list(ids[:2]) == [tok.bos_id, tok.eos_id] and (ids[2:] == tok.pad_id).all()


_PRELUDE = """
from jvssl.methods.base import Inputs

def config(method):
  c = config_lib.load(f"configs/multimodal_synthetic.py:{method},runlocal")
  c.optimizer.lr, c.schedule.warmup_steps = 2e-3, 0
  return c

# One batch with every modality any variant reads, from the first variant's data.
c = config(METHODS[0])
c.unlock()
c.data.audio.enabled = True
host_batch = next(pipeline.train_dataset(c, inputs=Inputs(modalities=("video", "text", "audio"))).as_numpy_iterator())


def extras(method, trainer, state, initial, out):
  pass
"""

METHODS = ("video_text", "xclip", "video_audio", "video_text_audio", "multimodal_mae", "internvideo")


@pytest.fixture(scope="module")
def results():
  return one_batch.train(_PRELUDE, METHODS, 60)


@pytest.mark.parametrize("method", METHODS)
def test_loss_falls(results, method):
  history = results[method]["history"]
  one_batch.assert_falls([h["loss"] for h in history])
  if method == "multimodal_mae":
    one_batch.assert_falls([h["text_loss"] for h in history])
  if method == "internvideo":  # Masked modelling and video-text contrast on one encoder: each part learns.
    one_batch.assert_falls([h["videomae/loss"] for h in history])
    one_batch.assert_falls([h["video_text/text_loss"] for h in history])


def test_internvideo_offers_its_parts_named_functions():
  config = config_lib.load("configs/multimodal_synthetic.py:internvideo,runlocal")
  method = registry.METHODS.get(config.method.name)(config, run_length(config))
  assert {"embed_video", "video_tokens", "embed_video_joint", "embed_text"} <= set(method.predict_fns())


@pytest.mark.parametrize(
  "fusion, overrides, reads_words",
  [
    ("video_first", [], False),
    ("late", [], False),
    ("joint", [], True),
    # MBT: words reach a video token in two fused blocks, into the bottleneck tokens and out of them; one fused
    # block (the last) is not enough.
    ("bottleneck", ["method.fusion_layer=0", "model.depth=2"], True),
    ("bottleneck", ["method.fusion_layer=1", "model.depth=2"], False),
  ],
)
def test_which_fusions_let_the_video_path_read_the_words(fusion, overrides, reads_words):
  from flax import nnx

  c = config_lib.load(
    "configs/multimodal_synthetic.py:multimodal_mae,runlocal", [f"method.fusion={fusion}", *overrides]
  )
  model = multimodal_mae.MultimodalMAEModel(c, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  video = rng.normal(size=(2, c.data.num_frames, c.data.image_size, c.data.image_size, 3)).astype(np.float32)
  n = model.encoder.num_tokens
  visible, masked = np.tile(np.arange(0, n, 2), (2, 1)), np.tile(np.arange(1, n, 2), (2, 1))
  tok = tokenizers.build(c.data.text)
  none = np.zeros((2, c.data.text.max_len), bool)
  outputs = []
  for caption in ("a disk rises", "the box spins clockwise"):
    ids = tokenizers.encode_padded(tok, [caption] * 2, c.data.text.max_len)
    outputs.append(model(video, visible, masked, ids, none, np.zeros(2, bool))[0])
  same = np.allclose(outputs[0], outputs[1], atol=1e-6)
  assert same != reads_words


def test_a_fixed_temperature_is_the_configs_whatever_the_parameter():
  # Weight decay still moves the logit-scale parameter when its gradient is stopped; a fixed temperature must not.
  config = config_lib.load("configs/multimodal_synthetic.py:video_text,runlocal")
  config.unlock()
  config.method.learn_temperature, config.method.temperature = False, 0.1
  method = registry.METHODS.get("video_text")(config, run_length(config))
  model = method.build(nnx.Rngs(0))
  model.logit_scale.value = jnp.zeros_like(model.logit_scale.value)  # As if decayed to a scale of 1.
  d = config.data
  batch = {
    "video": jnp.zeros((2, d.num_frames, d.image_size, d.image_size, 3)),
    "text": jnp.ones((2, d.text.max_len), jnp.int32),
  }
  _, metrics = method.loss(model, batch, jax.random.key(0), 0)
  np.testing.assert_allclose(float(metrics["text_logit_scale"]), 10.0, rtol=1e-5)

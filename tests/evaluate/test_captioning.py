"""The captioning evaluator: its metric plumbing, a decoder that learns captions determined by the features, and one
run through `--mode=eval`'s machinery on the synthetic set. METEOR's jar takes some 20 s to load, so here it is
either left out (no Java) or stood in for."""

import json
import logging
import math
import os
import re
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from jvssl import config as config_lib, registry, sharding
from jvssl.data import tokenizers
from jvssl.errors import ConfigError
from jvssl.evaluate import captioning, features

from conftest import REPO
from test_linear_probe import data_mesh

# Five words or more, so that every caption has 4-grams for BLEU-4.
CAPTIONS = ("a red disk rises up", "the blue box falls down", "a green star spins round", "the small ring grows big")
MAX_LEN = 28  # Bytes: the longest caption is 24, with bos and eos.


@pytest.fixture
def no_java(monkeypatch):
  """pycocoevalcap's scorers without METEOR's Java."""
  pytest.importorskip("pycocoevalcap")
  real = shutil.which
  monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "java" else real(name, *a, **k))


def test_normalize_drops_punctuation_and_case():
  assert captioning.normalize("A three-sided Shape, don't   it?!") == "a three-sided shape don't it"


def test_identical_captions_score_one_and_unrelated_ones_less(no_java, caplog):
  refs = [(c, c.replace("a ", "one ", 1)) for c in CAPTIONS]
  with caplog.at_level(logging.INFO, logger="jvssl"):
    same = captioning.caption_metrics([r[0].upper() + "." for r in refs], refs)  # Case and punctuation do not count.
  assert list(same) == ["bleu4", "rouge_l", "cider"]
  assert "METEOR skipped: it runs Java, and no `java` is on the PATH" in caplog.text
  assert same["bleu4"] == pytest.approx(1.0, abs=1e-6) and same["rouge_l"] == pytest.approx(1.0), same
  other = captioning.caption_metrics(["people talk in a kitchen"] * len(refs), refs)
  assert other["bleu4"] < 1e-3 and other["rouge_l"] < 0.3 and other["cider"] < 0.1 < same["cider"], (same, other)
  # A video without references is not scored: the same as leaving it out.
  assert captioning.caption_metrics(["x", *CAPTIONS], [(), *refs]) == pytest.approx(same)


def test_a_missing_pycocoevalcap_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "pycocoevalcap.bleu.bleu", None)  # Its import then fails.
  with pytest.raises(ConfigError, match=re.escape("needs pycocoevalcap: pip install -e '.[captioning]'")):
    captioning.caption_metrics(["a disk"], [("a disk",)])


def test_meteor_is_reported_when_java_is_found(monkeypatch):
  meteor = pytest.importorskip("pycocoevalcap.meteor.meteor")

  class Meteor:  # The jar's score for these inputs is not what is tested here.
    def compute_score(self, gts, res):
      assert sorted(gts) == sorted(res) == [0, 1] and res[0] == ["a red disk rises up"]
      return 0.25, [0.25, 0.25]

  monkeypatch.setattr(meteor, "Meteor", Meteor)
  monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/java")
  got = captioning.caption_metrics(list(CAPTIONS[:2]), [(c,) for c in CAPTIONS[:2]])
  assert list(got) == ["bleu4", "meteor", "rouge_l", "cider"] and got["meteor"] == 0.25


def toy_tokens(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """tokens [n, 4, 8] of noise with their class (which picks the caption) added to the first 4 dimensions; classes."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, len(CAPTIONS), n)
  x = 0.3 * rng.normal(size=(n, 4, 8)).astype(np.float32)
  x[:, :, : len(CAPTIONS)] += np.eye(len(CAPTIONS), dtype=np.float32)[y][:, None]
  return x, y


def test_decoder_learns_captions_determined_by_the_features(no_java):
  tokenizer = tokenizers.build(ConfigDict(dict(tokenizer="bytes", vocab_path="", max_len=MAX_LEN, lowercase=True)))
  x, y = toy_tokens(32, seed=0)
  # Each clip's video has its class's caption; the last has a second one, so the others' rows of the table are padded.
  captions = tuple((CAPTIONS[c],) for c in y[:-1]) + ((CAPTIONS[y[-1]], "one more caption"),)
  train = features.from_host(x, y, data_mesh(), sharding.RULE_SETS["dp"]).replace(captions=captions)
  cfg = config_lib.eval_config("captioning", width=32, depth=1, num_heads=2, num_epochs=100, batch_size=16, lr=3e-3)
  captioner, params = captioning.fit(cfg, train, tokenizer, MAX_LEN, seed=0)
  # Training draws each video's captions, never the padding.
  drawn = jax.jit(jax.vmap(captioner.draw, (None, 0)))(jnp.array([0, 31]), jnp.arange(50))  # [steps, 2, L]
  texts = {(tokenizer.decode(a), tokenizer.decode(b)) for a, b in np.asarray(drawn)}
  assert texts == {(captions[0][0], c) for c in captions[-1]}, texts
  x_test, y_test = toy_tokens(16, seed=1)
  decode = jax.jit(lambda params, video: captioner.greedy(params, video, length=MAX_LEN))
  refs = [(CAPTIONS[c],) for c in y_test]
  ids = np.asarray(decode(params, jnp.asarray(x_test)))
  assert (ids[:, 0] == tokenizer.bos_id).all()
  trained = [tokenizer.decode(row) for row in ids]
  assert trained == [r[0] for r in refs]
  untrained = [tokenizer.decode(row) for row in np.asarray(decode(captioner.init(seed=1)[0], x_test))]
  got, chance = captioning.caption_metrics(trained, refs), captioning.caption_metrics(untrained, refs)
  assert got["bleu4"] > 0.99 and got["rouge_l"] > 0.99 and got["cider"] > 1.0, got
  assert chance["bleu4"] < 0.1 and chance["rouge_l"] < 0.2 and chance["cider"] < 0.1, chance


def test_eval_mode_runs_captioning_on_the_synthetic_set(no_java, tmp_path):
  from jvssl import main, trainer as trainer_lib

  assert registry.EVALUATORS.get("captioning") is captioning.Captioning
  fields = dict(num_train=8, num_test=8, width=16, depth=1, num_heads=2, num_epochs=1, batch_size=8)
  overrides = [f"evals.captioning.{k}={v}" for k, v in fields.items()] + [
    "eval.batch_size=8",
    "eval.compare_random_init=False",
  ]
  # What `--mode=eval --evals=captioning --config.evals.captioning.x=...` builds, on a random initialisation.
  config = main.load_config(
    os.path.join(REPO, "configs", "multimodal_synthetic.py:video_text,runlocal"), overrides, "captioning"
  )
  trainer = trainer_lib.Trainer(config, sharding.make_mesh(config.mesh), 1, 1.0)
  columns = main.evaluate_model(config, trainer, trainer.init(config.seed), str(tmp_path), None)
  got = columns[config.method.name]
  assert set(got) == {"captioning/bleu4", "captioning/rouge_l", "captioning/cider"}, got
  assert all(math.isfinite(v) and v >= 0 for v in got.values()), got
  assert json.loads((tmp_path / "results.json").read_text())[config.method.name] == got

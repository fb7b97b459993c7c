"""Text tokenizers: bytes round trips, padding that keeps eos, TF equal to NumPy, and the SentencePiece and CLIP
tokenizers equal to their reference libraries on vocabularies the tests write."""

import gzip
import json
import re

import numpy as np
import pytest
import sentencepiece
import tensorflow as tf

from jvssl.data import tokenizers
from jvssl.errors import ConfigError

TEXTS = [
  "The cat sat on the mat.",
  "A dog's  toy\tis RED!!",
  "Ünïcödé café 123",
  "a photo of a cat and a dog",
  "",
]
# A tiny CLIP BPE: each merge's parts come from the bytes or from an earlier merge, as in CLIP's own file.
CLIP_MERGES = ["t h", "th e</w>", "c a", "ca t</w>", "a t</w>", "s at</w>", "m at</w>", "o n</w>", "d o", "do g</w>"]
CLIP_MERGES += ["' s</w>", "a n", "an d</w>", "p h", "o t", "ot o</w>", "ph oto</w>", "o f</w>", "r e", "re d</w>"]


def _config(**fields):
  cfg = tokenizers.default_config()
  cfg.update(fields)
  return cfg


@pytest.mark.parametrize("lowercase", [False, True])
def test_bytes_round_trip_keeps_any_unicode(lowercase):
  tok = tokenizers.build(_config(lowercase=lowercase))
  assert (tok.vocab_size, tok.pad_id) == (259, 0)
  for text in TEXTS + ["日本語のテキスト 🎥", "ΟΔΟΣ"]:
    ids = tok.encode(text)
    assert all(3 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == (text.lower() if lowercase else text)
    assert tok.decode(tokenizers.encode_padded(tok, text, 64)) == (text.lower() if lowercase else text)


def test_padding_and_truncation_keep_eos_last():
  tok = tokenizers.build(_config())
  rows = tokenizers.encode_padded(tok, ["ab", "a much longer caption"], 6)
  assert rows.dtype == np.int32 and rows.shape == (2, 6)
  b, e = tok.bos_id, tok.eos_id
  np.testing.assert_array_equal(rows[0], [b, ord("a") + 3, ord("b") + 3, e, 0, 0])
  np.testing.assert_array_equal(rows[1], [b, *(ord(c) + 3 for c in "a mu"), e])
  # Any nesting, str or UTF-8 bytes alike.
  nested = tokenizers.encode_padded(tok, [[t.encode() for t in TEXTS[:3]], TEXTS[2:]], 8)
  assert nested.shape == (2, 3, 8)
  np.testing.assert_array_equal(nested[0, 2], nested[1, 0])
  assert tokenizers.encode_padded(tok, "x", 4).shape == (4,)
  with pytest.raises(ConfigError, match="max_len"):
    tokenizers.encode_padded(tok, "x", 1)


@pytest.mark.parametrize("lowercase", [False, True])
def test_tf_tokenize_of_bytes_equals_encode_padded_in_any_shape(lowercase):
  tok = tokenizers.build(_config(lowercase=lowercase))
  texts = np.array(TEXTS + ["İstanbul ẞ ǅ ΟΔΟΣ"])
  for max_len in (2, 7, 40):
    for batch in (texts, texts[:6].reshape(2, 3), texts[0]):
      out = tokenizers.tf_tokenize(tok, tf.constant(batch), max_len)
      assert out.dtype == tf.int32 and out.shape == (*batch.shape, max_len)
      np.testing.assert_array_equal(out.numpy(), tokenizers.encode_padded(tok, batch, max_len))
  # Invalid UTF-8 is replaced in TF as in Python.
  raw = b"bad \xff utf-8"
  np.testing.assert_array_equal(
    tokenizers.tf_tokenize(tok, tf.constant(raw), 16).numpy(), tokenizers.encode_padded(tok, raw, 16)
  )


def _train_sentencepiece(path, **ids):
  corpus = [t for t in TEXTS if t] * 4 + ["the quick brown fox jumps over the lazy dog"] * 4
  sentencepiece.SentencePieceTrainer.train(
    sentence_iterator=iter(corpus), model_prefix=str(path), vocab_size=60, hard_vocab_limit=False, **ids
  )
  return f"{path}.model"


def _tf_data_ids(tok, texts, max_len):
  ds = tf.data.Dataset.from_tensor_slices({"text": texts})
  ds = ds.map(lambda x: tokenizers.tf_tokenize(tok, x["text"], max_len), num_parallel_calls=2, deterministic=True)
  assert ds.element_spec.shape == (max_len,)  # Static, so batching and the device transfer know it.
  return np.stack(list(ds.as_numpy_iterator()))


@pytest.mark.parametrize("lowercase", [False, True])
def test_sentencepiece_equals_its_library_and_runs_in_tf_data(tmp_path, lowercase):
  model = _train_sentencepiece(tmp_path / "spm")
  tok = tokenizers.build(_config(tokenizer="sentencepiece", vocab_path=model, lowercase=lowercase))
  sp = sentencepiece.SentencePieceProcessor(model_file=model)
  assert tok.vocab_size == sp.get_piece_size()
  # The trainer's default layout has no pad: it pads with unk (0); bos and eos are the model's.
  assert (tok.pad_id, tok.bos_id, tok.eos_id) == (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2)
  for text in TEXTS:
    ids = sp.encode(text.lower() if lowercase else text)
    assert tok.encode(text) == ids
    assert tok.decode(tokenizers.encode_padded(tok, text, 32)) == sp.decode(ids)
  np.testing.assert_array_equal(_tf_data_ids(tok, TEXTS, 12), tokenizers.encode_padded(tok, TEXTS, 12))


def test_sentencepiece_ids_of_a_t5_layout(tmp_path):
  # T5's vocabularies: pad 0, eos 1, unk 2 and no bos, so texts start with pad as T5's decoder does.
  model = _train_sentencepiece(tmp_path / "t5", pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
  tok = tokenizers.build(_config(tokenizer="sentencepiece", vocab_path=model))
  assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 0, 1)
  row = tokenizers.encode_padded(tok, "the cat", 16)
  assert row[0] == 0 and list(row).index(1) == len(tok.encode("the cat")) + 1


def _write_clip_vocab(folder):
  """vocab.json and merges.txt as HF's CLIP checkpoints have them, and OpenAI's .txt.gz of the same merges."""
  # CLIP's vocabulary order: bytes, bytes ending a word, merges, specials; HF's byte stand-ins, not ours.
  from transformers.convert_slow_tokenizer import bytes_to_unicode

  units = list(bytes_to_unicode().values())
  words = units + [u + "</w>" for u in units] + [m.replace(" ", "") for m in CLIP_MERGES]
  words += [tokenizers.CLIP_BOS, tokenizers.CLIP_EOS]
  folder.mkdir()
  (folder / "vocab.json").write_text(json.dumps({w: i for i, w in enumerate(words)}))
  (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(CLIP_MERGES) + "\n")
  gz = folder.parent / "bpe_simple_vocab_16e6.txt.gz"
  gz.write_bytes(gzip.compress(("\n".join(['"bpe_simple_vocab_16e6.txt#version: 0.2', *CLIP_MERGES]) + "\n").encode()))
  return folder, gz


def test_clip_bpe_equals_hf_clip_tokenizer(tmp_path):
  transformers = pytest.importorskip("transformers")
  folder, gz = _write_clip_vocab(tmp_path / "clip")
  hf = transformers.CLIPTokenizer.from_pretrained(str(folder))
  texts = TEXTS + ["A <|endoftext|> inside", "tabs\tand\nnewlines  and   spaces", "Its 2 cats' toys & mine"]
  paths = (folder, folder / "vocab.json", gz)  # Every form vocab_path takes gives the same tokenizer.
  toks = [tokenizers.build(_config(tokenizer="clip_bpe", vocab_path=str(p))) for p in paths]
  for tok in toks:
    assert (tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id) == (len(hf), 0, hf.bos_token_id, hf.eos_token_id)
    for text in texts:
      assert [tok.bos_id, *tok.encode(text), tok.eos_id] == hf(text)["input_ids"], text
  tok = toks[0]
  # OpenAI's and open_clip's padding: zeros after eos; truncation keeps eos last.
  rows = tokenizers.encode_padded(tok, ["the cat", "a photo of the cat and the dog on the mat"], 6)
  np.testing.assert_array_equal(rows[0], [tok.bos_id, *tok.encode("the cat"), tok.eos_id, 0, 0])
  assert rows[1, -1] == tok.eos_id
  assert tok.decode(rows[0]) == "the cat"
  # Where HF's CLIPTokenizer departs from OpenAI's, this follows OpenAI's: HTML entities are unescaped, and
  # lowercasing is Python's (a final sigma).
  assert tok.encode("cat &amp;amp; dog") == tok.encode("cat & dog")
  assert tok.encode("ΟΔΟΣ") == tok.encode("οδος") != hf("ΟΔΟΣ", add_special_tokens=False)["input_ids"]
  np.testing.assert_array_equal(_tf_data_ids(tok, texts, 10), tokenizers.encode_padded(tok, texts, 10))


def test_bad_configs_raise_one_line_config_errors(tmp_path):
  garbage = tmp_path / "garbage.model"
  garbage.write_bytes(b"not a model")
  bad_gz = tmp_path / "bpe.txt.gz"
  bad_gz.write_bytes(b"not gzip")
  lonely, broken, foreign = tmp_path / "lonely", tmp_path / "broken", tmp_path / "foreign"
  for folder, vocab in ((lonely, "{}"), (broken, "not json"), (foreign, '{"a": 0}')):
    folder.mkdir()
    (folder / "vocab.json").write_text(vocab)
  for folder in (broken, foreign):
    (folder / "merges.txt").write_text("#version: 0.2\n")
  cases = [
    (_config(tokenizer="wordpiece"), "must be one of"),
    (_config(tokenizer="sentencepiece"), "needs data.text.vocab_path"),
    (_config(tokenizer="sentencepiece", vocab_path=str(tmp_path / "missing.model")), "does not exist"),
    (_config(tokenizer="clip_bpe", vocab_path=str(tmp_path / "missing.txt.gz")), "does not exist"),
    (_config(tokenizer="sentencepiece", vocab_path=str(garbage)), "not a readable"),
    (_config(tokenizer="clip_bpe", vocab_path=str(lonely)), "merges.txt is missing"),
    (_config(tokenizer="clip_bpe", vocab_path=str(broken / "vocab.json")), "not a readable"),
    (_config(tokenizer="clip_bpe", vocab_path=str(foreign)), re.escape("has no <|startoftext|>")),
    (_config(tokenizer="clip_bpe", vocab_path=str(bad_gz)), "not a readable"),
  ]
  for cfg, match in cases:
    with pytest.raises(ConfigError, match=match) as info:
      tokenizers.build(cfg)
    assert "\n" not in str(info.value)

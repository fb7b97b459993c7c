import glob
import os

import pytest

from jvssl import config as config_lib
from jvssl.errors import ConfigError

from conftest import REPO

SYNTHETIC = os.path.join(REPO, "configs", "videomae_synthetic.py")


def test_overrides_are_typed():
  c = config_lib.load(
    SYNTHETIC, ["optimizer.lr=0.01", "model.patch_size=(2,4,4)", "train.num_steps=7", "data.augment.flip=true"]
  )
  assert c.optimizer.lr == 0.01 and isinstance(c.optimizer.lr, float)
  assert c.model.patch_size == (2, 4, 4)
  assert c.train.num_steps == 7 and c.data.augment.flip is True


def test_unknown_override_key_is_named():
  with pytest.raises(ConfigError, match=r"unknown config key 'optimizer.lrr' \(did you mean 'lr'\?\)"):
    config_lib.load(SYNTHETIC, ["optimizer.lrr=1"])


def test_wrong_type_is_named():
  with pytest.raises(ConfigError, match="'train.num_steps' must be int"):
    config_lib.load(SYNTHETIC, ["train.num_steps=abc"])


def test_missing_config_file():
  with pytest.raises(ConfigError, match="config file not found"):
    config_lib.load("configs/does_not_exist.py")


def test_unknown_key_in_a_recipe_is_named(tmp_path):
  path = tmp_path / "bad.py"
  path.write_text(
    "from jvssl.config import base_config\n"
    "def get_config(arg=None):\n  c = base_config()\n  c.lock()\n  c.optimizer.learning_rate = 1\n"
    "  return c\n"
  )
  with pytest.raises(ConfigError, match="learning_rate"):
    config_lib.load(str(path))


def test_validate_catches_keys_added_to_an_unlocked_config():
  c = config_lib.base_config()
  c.model.depthh = 3
  with pytest.raises(ConfigError, match="model.depthh"):
    config_lib.validate(c)


def test_float16_is_refused():
  with pytest.raises(ConfigError, match="float16"):
    config_lib.load(SYNTHETIC, ["train.compute_dtype=float16"])


@pytest.mark.parametrize("backend, expected", [("cpu", "float32"), ("gpu", "bfloat16"), ("tpu", "bfloat16")])
def test_auto_compute_dtype_follows_the_backend(monkeypatch, backend, expected):
  import jax
  import jax.numpy as jnp

  from jvssl import models

  config = config_lib.load(SYNTHETIC, ["train.compute_dtype=auto"])
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  assert models.dtypes(config) == (jnp.dtype(expected), jnp.dtype("float32"))
  assert models.dtype_kw(config) == {"dtype": jnp.dtype(expected), "param_dtype": jnp.dtype("float32")}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))))
def test_every_shipped_config_loads_with_runlocal(path):
  c = config_lib.load(path + ":runlocal")
  assert c.train.num_steps <= 10


def test_parse_arg():
  arg = config_lib.parse_arg("vit_s,runlocal", variant="vit_b", runlocal=False)
  assert arg.variant == "vit_s" and arg.runlocal
  with pytest.raises(ConfigError, match="unknown config argument"):
    config_lib.parse_arg("nope=1", variant="vit_b")


def test_changed_fields_names_every_difference_with_its_dotted_name():
  old = {"a": 1, "b": {"c": 2, "d": [1, 2]}, "gone": 0}
  new = {"a": 1, "b": {"c": 3, "d": [1, 2], "e": "x"}}
  assert config_lib.changed_fields(old, new) == ["b.c: 2 -> 3", "b.e: (absent) -> x", "gone: 0 -> (absent)"]
  assert config_lib.changed_fields(old, old) == []

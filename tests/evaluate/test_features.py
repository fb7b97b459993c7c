import numpy as np

from jvssl import sharding
from jvssl.evaluate import features

from test_linear_probe import data_mesh


def test_rows_come_back_in_split_order_without_padding():
  x, y = np.arange(30, dtype=np.float32).reshape(10, 3), np.arange(10) % 3
  mesh, rules = data_mesh(), sharding.RULE_SETS["dp"]
  f = features.from_host(x, y, mesh, rules, mask=[1] * 9 + [0])
  back_x, back_y = f.to_host()
  np.testing.assert_array_equal(back_x, x)
  np.testing.assert_array_equal(back_y, y)
  assert features.num_classes(f) == 3

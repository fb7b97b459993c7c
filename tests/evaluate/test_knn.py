import jax
import jax.numpy as jnp
import numpy as np

from jvssl import sharding
from jvssl.evaluate import features
from jvssl.evaluate.knn import knn_accuracy

from test_linear_probe import blobs, data_mesh


def host_knn_predict(train_x, train_y, test_x, *, k: int, temperature: float, num_classes: int) -> np.ndarray:
  """k-NN as it was before features stayed sharded: every training feature on the host, then on one device."""
  train_x = jnp.asarray(train_x / np.linalg.norm(train_x, axis=1, keepdims=True).clip(1e-12))
  k = min(k, train_x.shape[0])
  x = test_x / np.linalg.norm(test_x, axis=1, keepdims=True).clip(1e-12)
  sims, idx = jax.lax.top_k(jnp.asarray(x) @ train_x.T, k)
  votes = jax.nn.one_hot(jnp.asarray(train_y)[idx], num_classes) * jnp.exp(sims / temperature)[..., None]
  return np.asarray(votes.sum(axis=1).argmax(-1))


def test_sharded_knn_equals_the_host_knn():
  (train_x, train_y), (test_x, test_y) = blobs(n_train=150, n_test=70, num_classes=5)
  mesh, rules = data_mesh(), sharding.RULE_SETS["dp"]
  train = features.from_host(train_x, train_y, mesh, rules)
  test = features.from_host(test_x, test_y, mesh, rules)
  # k above the number of training clips: every one votes, as before.
  for k, temperature, chunk in ((20, 0.07, 32), (200, 0.5, 1024)):
    want = (host_knn_predict(train_x, train_y, test_x, k=k, temperature=temperature, num_classes=5) == test_y).mean()
    got = knn_accuracy(train, test, k=k, temperature=temperature, num_classes=5, chunk=chunk)
    assert got == want, (k, got, want)
  assert 0.3 < want < 0.95


def test_padding_and_unreadable_clips_do_not_vote_or_count():
  # Two identical training clips of class 1 and a far one of class 0; the class-1 pair is masked out (a stood-in
  # video), so every query's nearest real neighbour is the class-0 clip.
  train_x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
  mesh, rules = data_mesh(), sharding.RULE_SETS["dp"]
  train = features.from_host(train_x, [1, 1, 0], mesh, rules, mask=[0, 0, 1])
  test = features.from_host(np.array([[1.0, 0.1], [1.0, 0.2]], np.float32), [0, 1], mesh, rules, mask=[1, 0])
  assert knn_accuracy(train, test, k=2, temperature=0.07, num_classes=2) == 1.0

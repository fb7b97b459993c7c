"""VICReg's three terms on hand-made embeddings (the training test is in test_train_methods.py)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jvssl.methods import vicreg


def test_invariance_is_the_mean_squared_difference():
  z1, z2 = jnp.zeros((4, 3)), jnp.full((4, 3), 2.0)
  assert float(vicreg.invariance(z1, z2)) == pytest.approx(4.0)


def test_variance_hinge_is_zero_above_gamma_and_one_when_collapsed():
  spread = jnp.array([[-2.0, 3.0], [2.0, -3.0], [-2.0, 3.0], [2.0, -3.0]])  # std > 1 in both dimensions
  assert float(vicreg.variance(spread, 1.0, 1e-4)) == 0.0
  collapsed = jnp.ones((4, 2))
  assert float(vicreg.variance(collapsed, 1.0, 1e-4)) == pytest.approx(1.0 - np.sqrt(1e-4))


def test_covariance_counts_off_diagonal_terms_only():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(64, 1))
  independent = jnp.asarray(np.concatenate([a, rng.normal(size=(64, 1))], axis=1))
  correlated = jnp.asarray(np.concatenate([a, 2 * a], axis=1))
  cov = np.cov(np.asarray(correlated), rowvar=False)
  assert float(vicreg.covariance(correlated)) == pytest.approx(2 * cov[0, 1] ** 2 / 2, rel=1e-5)
  assert float(vicreg.covariance(independent)) < 0.1 * float(vicreg.covariance(correlated))

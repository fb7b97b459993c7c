"""jvssl: self-supervised video representation learning in JAX/Flax NNX."""

__version__ = "0.1.0"

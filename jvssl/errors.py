"""Errors a user can cause and fix; `jvssl.main` prints them as one line."""


class UserError(Exception):
  """Bad input from the user: config, paths, checkpoints, data."""


class ConfigError(UserError):
  """An unknown config key, a wrong type, a missing config file."""


class CheckpointError(UserError):
  """A checkpoint that cannot be used with this config."""


class NonFiniteLossError(UserError):
  """Training produced a NaN or infinite loss; nothing was saved after it."""


class DataError(UserError):
  """Input data that cannot be read or is too often broken."""

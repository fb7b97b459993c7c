"""Name -> object registries, so configs choose models, methods, data and evaluators by name."""

from typing import Any, Callable

from jvssl.errors import ConfigError


class Registry:
  """A named table of factories of one kind ("model", "method", ...)."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, Any] = {}

  def register(self, name: str) -> Callable[[Any], Any]:
    def add(obj):
      if name in self._entries:
        raise ValueError(f"{self.kind} '{name}' is registered twice")
      self._entries[name] = obj
      return obj
    return add

  def get(self, name: str) -> Any:
    if name not in self._entries:
      known = ", ".join(sorted(self._entries)) or "none"
      raise ConfigError(f"unknown {self.kind} '{name}'; known: {known}")
    return self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries


MODELS = Registry("model")
METHODS = Registry("method")
SOURCES = Registry("data source")
EVALUATORS = Registry("evaluator")

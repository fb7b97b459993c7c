"""Name -> object registries, so configs choose models, methods, data sources and evaluators by name.

Plug-ins are found by name: `METHODS.get("vicreg")` imports `jvssl.methods.vicreg`, whose
`@METHODS.register("vicreg")` adds it. A new method is one new file (plus a config), with no
list to edit. Entries whose module has another name (`r3d` in `jvssl/models/resnet3d.py`) are
found by importing the whole package once, which is also how `names()` lists them all.
"""

import importlib
import pkgutil
from typing import Any, Callable

from jvssl.errors import ConfigError


class Registry:
  """A named table of factories of one kind ("model", "method", ...), filled from one package."""

  def __init__(self, kind: str, package: str):
    self.kind = kind
    self.package = package
    self._entries: dict[str, Any] = {}
    self._imported_all = False

  def register(self, name: str) -> Callable[[Any], Any]:
    def add(obj):
      if name in self._entries and self._entries[name] is not obj:
        raise ValueError(f"{self.kind} '{name}' is registered twice")
      self._entries[name] = obj
      return obj

    return add

  def get(self, name: str) -> Any:
    if name not in self._entries:
      self._import_module(name)
    if name not in self._entries:
      self._import_all()
    if name not in self._entries:
      known = ", ".join(self.names()) or "none"
      raise ConfigError(f"unknown {self.kind} '{name}'; known: {known}")
    return self._entries[name]

  def names(self) -> list[str]:
    """Every registered name, after importing every module of the package."""
    self._import_all()
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    try:
      self.get(name)
    except ConfigError:
      return False
    return True

  def _import_module(self, name: str) -> None:
    module = f"{self.package}.{name}"
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      # Only a missing plug-in module means "not here"; a plug-in's own failing import is a real error.
      if e.name != module:
        raise

  def _import_all(self) -> None:
    if self._imported_all:
      return
    package = importlib.import_module(self.package)
    for info in pkgutil.iter_modules(package.__path__):
      if not info.name.startswith("_"):
        importlib.import_module(f"{self.package}.{info.name}")
    self._imported_all = True


MODELS = Registry("model", "jvssl.models")
METHODS = Registry("method", "jvssl.methods")
SOURCES = Registry("data source", "jvssl.data")
EVALUATORS = Registry("evaluator", "jvssl.evaluate")

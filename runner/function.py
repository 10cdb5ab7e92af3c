"""A function folder: its manifest and its handler module.

A function is a folder with ``manifest.toml`` and ``handler.py``. The handler
module defines ``routes(ctx) -> dict[str, object]``: Falcon resources keyed by
their URI template (e.g. ``{"/user/{customer_id}": Customer(ctx)}``). A queue
function's routes include the manifest's ``trigger.path``, to which the runner
POSTs each message as JSON.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from runner import manifest as manifest_module
from runner.manifest import Manifest, ManifestError


@dataclasses.dataclass(frozen=True)
class Function:
    """A function folder with its parsed manifest."""

    directory: Path
    manifest: Manifest

    @classmethod
    def load(cls, directory: Path) -> Function:
        directory = directory.resolve()
        if not (directory / "handler.py").is_file():
            raise ManifestError(f"{directory.name} has no handler.py")
        return cls(directory, manifest_module.load(directory))

    @property
    def name(self) -> str:
        return self.manifest.name

    def import_handler(self) -> ModuleType:
        """Import ``handler.py``; the folder's own modules are importable beside it."""
        sys.path.insert(0, str(self.directory))
        spec = importlib.util.spec_from_file_location(f"tombola_function_{self.name}", self.directory / "handler.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "routes", None)):
            raise ManifestError(f"{self.name}/handler.py defines no routes(ctx)")
        return module

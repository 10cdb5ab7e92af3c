"""The functions of a pack: every folder with a manifest.toml in the functions directory."""

from __future__ import annotations

from pathlib import Path

from runner.function import Function
from runner.manifest import ManifestError


def load_functions(directory: Path) -> list[Function]:
    """Load every function folder of ``directory``, by folder name; raise ManifestError on the first bad one."""
    if not directory.is_dir():
        raise ManifestError(f"{directory} is not a folder of functions (see TOMBOLA_FUNCTIONS_DIR)")
    functions: dict[str, Function] = {}
    for folder in sorted(directory.iterdir()):
        if not (folder / "manifest.toml").is_file():
            continue
        try:
            function = Function.load(folder)
        except ManifestError as error:
            raise ManifestError(f"{folder.name}: {error}") from None
        if function.name in functions:
            raise ManifestError(f"{folder.name}: the function name {function.name} is already used")
        functions[function.name] = function
    return list(functions.values())

"""Function packages: a function folder as a zip, checked before the gateway trusts it.

A package holds ``manifest.toml`` and ``handler.py`` at its root, beside the
function's own modules. ``build`` makes the same bytes from the same folder
(sorted entries, fixed timestamps and modes, no caches and no dotfiles), so its
sha256 tells whether the folder changed. ``inspect`` refuses what could hurt
the gateway: oversize archives, zip bombs, absolute or ``..`` paths (zip-slip),
links and special files, a missing or foreign manifest. ``install`` writes a
checked package to its own folder, whole or not at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from runner import manifest as manifest_module
from runner.manifest import Manifest, ManifestError

MAX_PACKAGE = 10 * 1024 * 1024
MAX_CONTENT = 50 * 1024 * 1024
MAX_ENTRIES = 200
MAX_MANIFEST = 64 * 1024
REQUIRED = ("manifest.toml", "handler.py")
TIMESTAMP = (1980, 1, 1, 0, 0, 0)
UNIX = 3
ENCRYPTED = 0x1
SKIPPED_SUFFIXES = (".pyc", ".pyo")


class PackageError(ValueError):
    """A package or folder the gateway refuses; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Package:
    """A checked package: its bytes, their sha256 and its manifest."""

    data: bytes
    sha256: str
    manifest: Manifest
    manifest_text: str

    @property
    def size(self) -> int:
        return len(self.data)


def _files(folder: Path) -> Iterator[str]:
    """The files of ``folder`` to package, as sorted relative POSIX paths."""
    found: list[str] = []
    for root, directories, files in os.walk(folder):
        base = Path(root)
        for name in list(directories):
            if (base / name).is_symlink():
                raise PackageError(f"{(base / name).relative_to(folder)}: a function folder may not hold links")
        directories[:] = [name for name in directories if name != "__pycache__" and not name.startswith(".")]
        for name in files:
            if name.startswith(".") or name.endswith(SKIPPED_SUFFIXES):
                continue
            path = base / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink():
                raise PackageError(f"{relative}: a function folder may not hold links")
            if not path.is_file():
                raise PackageError(f"{relative}: a function folder may hold regular files only")
            found.append(relative)
    yield from sorted(found)


def build(folder: Path) -> bytes:
    """The package of a function folder; the same folder always gives the same bytes."""
    if not folder.is_dir():
        raise PackageError(f"{folder} is not a folder")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for relative in _files(folder):
            info = zipfile.ZipInfo(relative, date_time=TIMESTAMP)
            info.create_system = UNIX
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, (folder / relative).read_bytes(), zipfile.ZIP_DEFLATED, 9)
    return buffer.getvalue()


def _check_entry(info: zipfile.ZipInfo) -> None:
    """Refuse an entry that could write outside its folder or is not a plain file or folder."""
    name = info.filename
    if "\\" in name:
        raise PackageError(f"{name!r}: use / between path segments")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise PackageError(f"{name!r}: absolute paths are not allowed")
    if any(part in ("", ".", "..") for part in name.rstrip("/").split("/")):
        raise PackageError(f"{name!r}: '..', '.' and empty path segments are not allowed")
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise PackageError(f"{name!r}: links are not allowed")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise PackageError(f"{name!r}: only regular files and folders are allowed")
    if info.flag_bits & ENCRYPTED:
        raise PackageError(f"{name!r}: encrypted entries are not allowed")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise PackageError(f"{name!r}: only stored or deflated entries are allowed")


def _read_manifest(archive: zipfile.ZipFile, function: str) -> tuple[Manifest, str]:
    info = archive.getinfo("manifest.toml")
    if info.file_size > MAX_MANIFEST:
        raise PackageError(f"manifest.toml is larger than {MAX_MANIFEST // 1024} KiB")
    try:
        text = archive.read(info).decode("utf-8")
    except UnicodeDecodeError:
        raise PackageError("manifest.toml must be UTF-8 text") from None
    try:
        manifest = manifest_module.loads(text)
    except ManifestError as error:
        raise PackageError(f"manifest.toml: {error}") from None
    if manifest.name != function:
        raise PackageError(f"manifest.toml names the function {manifest.name!r}, not {function!r}")
    return manifest, text


def inspect(data: bytes, function: str) -> Package:
    """Check that ``data`` is a package of ``function``; raise PackageError saying what is wrong."""
    if len(data) > MAX_PACKAGE:
        raise PackageError(f"the package is larger than {MAX_PACKAGE // 2**20} MiB", status=413)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ENTRIES:
                raise PackageError(f"the package holds more than {MAX_ENTRIES} entries", status=413)
            if sum(info.file_size for info in infos) > MAX_CONTENT:
                raise PackageError(f"the package unpacks to more than {MAX_CONTENT // 2**20} MiB", status=413)
            names: set[str] = set()
            for info in infos:
                _check_entry(info)
                if info.filename.rstrip("/") in names:
                    raise PackageError(f"{info.filename!r} is in the package twice")
                names.add(info.filename.rstrip("/"))
            for required in REQUIRED:
                if required not in names or archive.getinfo(required).is_dir():
                    raise PackageError(f"the package has no {required} at its root")
            damaged = archive.testzip()
            if damaged is not None:
                raise PackageError(f"{damaged!r} is damaged (bad checksum)")
            manifest, text = _read_manifest(archive, function)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise PackageError(f"the package is not a valid zip archive: {error}", status=400) from None
    return Package(data, hashlib.sha256(data).hexdigest(), manifest, text)


def _marker(target: Path) -> Path:
    return target.with_name(f"{target.name}.sha256")


def installed(target: Path, sha256: str) -> bool:
    """True when the folder ``target`` holds the package whose sha256 is ``sha256``."""
    marker = _marker(target)
    return target.is_dir() and marker.is_file() and marker.read_text(encoding="ascii").strip() == sha256


def install(package: Package, target: Path) -> Path:
    """Extract ``package`` into the folder ``target`` unless it already holds it; return ``target``.

    The files go to a hidden folder beside ``target`` first, which then takes
    its name: a crash never leaves a half-written function behind.
    """
    if installed(target, package.sha256):
        return target
    marker = _marker(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with zipfile.ZipFile(io.BytesIO(package.data)) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                path = staging.joinpath(*info.filename.split("/"))
                if not path.resolve().is_relative_to(staging.resolve()):
                    raise PackageError(f"{info.filename!r} would be written outside its folder")
                path.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(path, "xb") as sink:
                    shutil.copyfileobj(source, sink)
                path.chmod(0o644)
        for folder in (staging, *(path for path in staging.rglob("*") if path.is_dir())):
            folder.chmod(0o755)
        marker.unlink(missing_ok=True)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    marker.write_text(package.sha256 + "\n", encoding="ascii")
    return target

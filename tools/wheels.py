"""Write small, valid wheels directly (no build backend, nothing downloaded) for tests and benchmarks.

    from tools.wheels import write_wheel
    write_wheel("/tmp/wheelhouse", "fleetops-probe-a", "1.0", modules=3)

A wheel is a zip holding the package files, `<name>-<version>.dist-info/{METADATA,WHEEL,RECORD}` and
optionally `entry_points.txt`; pip installs it like any other. `corrupt_payload` damages the body of a
module (not the metadata), so pip resolves the wheel and then fails while installing it: a failure in
the middle of a pip run, which is what the revert tests need.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import zipfile


def _escape(value):
    return re.sub(r"[-_.]+", "_", value)


def _digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def wheel_name(name, version):
    return "%s-%s-py3-none-any.whl" % (_escape(name), version.replace("-", "_"))


def write_wheel(directory, name, version, modules=1, module_bytes=200, console_script=False, requires=(),
                data_bytes=0):
    """Write <directory>/<name>-<version>-py3-none-any.whl and return its path.

    The package imports as the escaped name and has `modules` extra modules of about `module_bytes`
    bytes of code each, and with `data_bytes` a binary data file of that size (what native libraries and
    data weigh in real packages); `__version__` holds the version so a test can tell which one is imported."""
    os.makedirs(directory, exist_ok=True)
    package = _escape(name).lower()
    dist_info = "%s-%s.dist-info" % (_escape(name), version)
    files = {
        "%s/__init__.py" % package: ("__version__ = %r\n\ndef main():\n    print(__version__)\n" % version).encode(),
    }
    # Code, not comments: pip byte-compiles what it installs, and compiling code costs what it does in real packages.
    unit = "def f%%d(value, scale=2):\n    if value > %d:\n        return [value * scale, %r]\n    return {'v': value}\n\n" % (
        len(version), version)
    count = max(1, module_bytes // len(unit % 0))
    filler = "".join(unit % number for number in range(count))
    for index in range(modules):
        files["%s/mod%03d.py" % (package, index)] = ("VALUE = %d\n%s" % (index, filler)).encode()
    if data_bytes:
        # Filler bytes standing for native code and data; the same for the same name and version.
        seed = hashlib.sha256(("%s %s" % (name, version)).encode()).digest()
        block = b"".join(hashlib.sha256(seed + bytes([i])).digest() for i in range(256))  # 8 kB
        files["%s/_data.bin" % package] = (block * (data_bytes // len(block) + 1))[:data_bytes]
    metadata = ["Metadata-Version: 2.1", "Name: %s" % name, "Version: %s" % version,
                "Summary: fleetops test package"]
    metadata += ["Requires-Dist: %s" % req for req in requires]
    files[dist_info + "/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[dist_info + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: fleetops-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if console_script:
        files[dist_info + "/entry_points.txt"] = ("[console_scripts]\n%s = %s:main\n" % (package.replace("_", "-"), package)).encode()
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for arcname, data in files.items():
        writer.writerow([arcname, _digest(data), len(data)])
    writer.writerow([dist_info + "/RECORD", "", ""])
    files[dist_info + "/RECORD"] = record.getvalue().encode()
    path = os.path.join(directory, wheel_name(name, version))
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in files.items():
            archive.writestr(zipfile.ZipInfo(arcname, date_time=(2024, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    os.replace(tmp, path)
    return path


def corrupt_payload(path):
    """Damage the compressed body of the package's __init__.py while METADATA stays readable."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/__init__.py"))
    with open(path, "r+b") as stream:
        stream.seek(info.header_offset)
        header = stream.read(30)
        name_len = int.from_bytes(header[26:28], "little")
        extra_len = int.from_bytes(header[28:30], "little")
        start = info.header_offset + 30 + name_len + extra_len
        stream.seek(start)
        body = bytearray(stream.read(info.compress_size))
        for index in range(len(body)):
            body[index] ^= 0x5A
        stream.seek(start)
        stream.write(bytes(body))
    return path


# An in-tree PEP 517 / PEP 660 build backend with no requirements: pip builds and installs projects that use it
# (editable, from a directory or from a git URL) with build isolation and nothing downloaded.
BACKEND = r'''
import base64, csv, hashlib, io, os, re, zipfile

def _meta():
    with open("PROJECT", encoding="utf-8") as stream:
        name, version = stream.read().split()
    return name, version

def _escape(value):
    return re.sub(r"[-_.]+", "_", value)

def _write(directory, files):
    name, version = _meta()
    info = "%s-%s.dist-info" % (_escape(name), version)
    files = dict(files)
    files[info + "/METADATA"] = ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)).encode()
    files[info + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: fleetops-backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for arcname, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([arcname, "sha256=" + digest, len(data)])
    writer.writerow([info + "/RECORD", "", ""])
    files[info + "/RECORD"] = record.getvalue().encode()
    filename = "%s-%s-py3-none-any.whl" % (_escape(name), version)
    with zipfile.ZipFile(os.path.join(directory, filename), "w") as archive:
        for arcname, data in files.items():
            archive.writestr(arcname, data)
    return filename

def get_requires_for_build_wheel(config_settings=None):
    return []

get_requires_for_build_editable = get_requires_for_build_wheel

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    package = _escape(_meta()[0]).lower()
    files = {}
    for base, _, names in os.walk(package):
        for item in names:
            if not item.endswith(".pyc"):
                path = os.path.join(base, item)
                with open(path, "rb") as stream:
                    files[path.replace(os.sep, "/")] = stream.read()
    return _write(wheel_directory, files)

def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    name = _escape(_meta()[0])
    return _write(wheel_directory, {"__editable__.%s.pth" % name: (os.path.abspath(".") + "\n").encode()})
'''


def write_project(directory, name, version, value="1"):
    """A source tree pip can build offline: `<name>` imports as its escaped name with VALUE = value."""
    package = os.path.join(directory, _escape(name).lower())
    os.makedirs(package, exist_ok=True)
    with open(os.path.join(directory, "pyproject.toml"), "w", encoding="utf-8") as stream:
        stream.write('[build-system]\nrequires = []\nbuild-backend = "fleetops_backend"\nbackend-path = ["."]\n')
    with open(os.path.join(directory, "fleetops_backend.py"), "w", encoding="utf-8") as stream:
        stream.write(BACKEND)
    with open(os.path.join(directory, "PROJECT"), "w", encoding="utf-8") as stream:
        stream.write("%s %s\n" % (name, version))
    with open(os.path.join(package, "__init__.py"), "w", encoding="utf-8") as stream:
        stream.write("VALUE = %r\n" % value)
    return directory

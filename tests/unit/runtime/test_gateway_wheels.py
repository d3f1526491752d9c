"""Tests of the gateway image's wheel gathering: platform tags, the packed wheel, the pins."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

from devaipod import __version__
from devaipod.runtime.gateway_wheels import (
    TargetPython,
    canonical_name,
    installed_constraints,
    pack_devaipod_wheel,
    runtime_requirements,
)


def glibc_python(minor: int) -> TargetPython:
    return TargetPython(3, 11, "cpython", "x86_64", "glibc", (2, minor))


def test_platform_tags_glibc_newest_first() -> None:
    tags = glibc_python(36).platform_tags()
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_17_x86_64" in tags
    assert "manylinux_2_5_x86_64" in tags
    assert "manylinux_2_4_x86_64" not in tags
    assert tags[-3:] == ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def test_platform_tags_old_glibc_drops_aliases() -> None:
    tags = glibc_python(12).platform_tags()
    assert "manylinux2014_x86_64" not in tags
    assert "manylinux2010_x86_64" in tags
    assert "manylinux_2_17_x86_64" not in tags


def test_platform_tags_musl() -> None:
    target = TargetPython(3, 12, "cpython", "aarch64", "musl", (1, 2))
    assert target.platform_tags() == [
        "musllinux_1_2_aarch64",
        "musllinux_1_1_aarch64",
        "musllinux_1_0_aarch64",
    ]
    assert target.abi == "cp312"


def test_canonical_name_normalises_separators() -> None:
    assert canonical_name("PyYAML") == "pyyaml"
    assert canonical_name("typing_extensions") == "typing-extensions"
    assert canonical_name("jsonschema.specifications__x") == "jsonschema-specifications-x"


def test_packed_wheel_is_reproducible(tmp_path: Path) -> None:
    first = pack_devaipod_wheel(tmp_path / "a")
    second = pack_devaipod_wheel(tmp_path / "b")
    assert first.name == f"devaipod-{__version__}-py3-none-any.whl"
    assert first.read_bytes() == second.read_bytes()


def test_packed_wheel_record_matches_files(tmp_path: Path) -> None:
    wheel = pack_devaipod_wheel(tmp_path)
    dist_info = f"devaipod-{__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "devaipod/__init__.py" in names
        assert "devaipod/relay.py" in names
        assert "devaipod/py.typed" in names
        assert not any("__pycache__" in name for name in names)
        assert (
            "devaipod = devaipod.cli:main" in archive.read(f"{dist_info}/entry_points.txt").decode()
        )
        assert "Root-Is-Purelib: true" in archive.read(f"{dist_info}/WHEEL").decode()

        record = archive.read(f"{dist_info}/RECORD").decode()
        rows = list(csv.reader(io.StringIO(record)))
        recorded = {row[0] for row in rows}
        assert recorded == names
        for name, digest, size in rows:
            if name.endswith("RECORD"):
                continue
            data = archive.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == f"sha256={expected.decode()}", name
            assert int(size) == len(data), name


def test_packed_wheel_installs_and_imports(tmp_path: Path) -> None:
    wheel = pack_devaipod_wheel(tmp_path / "wheels")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet",
         "--disable-pip-version-check", "--target", str(target), str(wheel)],
        check=True,
    )  # fmt: skip
    imported = subprocess.run(
        [sys.executable, "-c", "import devaipod.relay, sys; print(devaipod.relay.__file__)"],
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip().startswith(str(target))


def test_runtime_requirements_are_pinned_runtime_only() -> None:
    requirements = runtime_requirements()
    names = {canonical_name(line.split("==")[0]) for line in requirements}
    assert {"click", "aiohttp", "pydantic", "pyyaml"} <= names
    assert "pytest" not in names
    assert all("==" in line for line in requirements)


def test_installed_constraints_include_transitive_pins() -> None:
    constraints = installed_constraints(runtime_requirements())
    names = {line.split("==")[0] for line in constraints}
    assert "pydantic-core" in names
    assert "multidict" in names
    assert "click" in names
    assert "pytest" not in names
    assert "devaipod" not in names
    ordered_names = [line.split("==")[0] for line in constraints]
    assert ordered_names == sorted(ordered_names)

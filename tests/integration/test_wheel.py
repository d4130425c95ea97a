"""A normally installed wheel (not the editable checkout) ships conf/ and composes every
experiment through the nmtbucket-train entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.integration.train_cli import read_results, tiny_overrides, write_tiny_corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True,
        cwd=out,
    )
    (built,) = out.glob("nmtbucket-*.whl")
    return built


def test_wheel_contains_every_package_and_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    source_packages = {
        str(p.parent.relative_to(REPO)) for p in (REPO / "nmtbucket").rglob("__init__.py")
    }
    for package in source_packages:
        assert f"{package}/__init__.py" in names, f"{package} is missing from the wheel"
    shipped = {str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml")}
    assert shipped and {f"nmtbucket/conf/{name}" for name in shipped} <= names


def test_installed_wheel_composes_an_experiment(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = "import nmtbucket, sys; print(nmtbucket.__file__)"
    location = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert location.startswith(str(target))  # the wheel, not the checkout
    script = target / "bin" / "nmtbucket-train"
    assert script.is_file()
    shown = subprocess.run(
        [str(script), "+experiment=demo", "--cfg", "job"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert "name: demo" in shown.stdout and "task: synthetic" in shown.stdout

    write_tiny_corpus(tmp_path / "data")
    trained = subprocess.run(
        [str(script), *tiny_overrides(tmp_path, **{"trainer.max_updates": 2})],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert trained.returncode == 0, trained.stderr
    assert read_results(tmp_path / "run")["updates"] == 2

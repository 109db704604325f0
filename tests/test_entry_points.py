"""The commands installed with the package (`[project.scripts]`) run each module's `main`, as
`python -m MODULE` does."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DECLARED = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_declared_command_is_installed_and_loads_its_main():
    installed = {e.name: e for e in entry_points(group="console_scripts") if e.name in DECLARED}
    assert sorted(installed) == sorted(DECLARED), "reinstall: pip install -e '.[test]'"
    for name, entry in installed.items():
        assert entry.value == DECLARED[name]
        function = entry.value.split(":")[1]
        assert function == "main" and callable(entry.load())


def test_an_installed_command_answers_help_like_its_module():
    command = Path(sys.executable).parent / "zoo-train"
    done = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=120)
    module = subprocess.run(
        [sys.executable, "-m", "zoo.train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == module.stdout and "usage:" in done.stdout

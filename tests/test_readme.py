"""The README as a newcomer reads it: its first two commands, run literally in a copy of the
repository with Debian's system Python (PEP 668), and the claims its wording makes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

SYSTEM_PYTHON = Path("/usr/bin/python3")
# the same tiny file the inner `bash scripts/test` runs instead of the whole suite (which
# includes this test)
INNER_TESTS = "tests/test_units.py"


def readme_commands() -> list[str]:
    out = subprocess.run(
        ["sh", str(ROOT / "scripts" / "readme-commands")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.splitlines()


def test_the_readme_starts_with_two_commands_that_need_no_system_pip() -> None:
    first, second = readme_commands()
    assert first.startswith("python3 -m venv .venv && ")
    assert "python3 -m pip install" not in first  # PEP 668 refuses it on Debian/Ubuntu
    assert second == "bash scripts/test"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/readme-commands" in ci  # CI runs exactly these lines


def _externally_managed(python: Path) -> bool:
    stdlib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (Path(stdlib) / "EXTERNALLY-MANAGED").exists()


def _copy_repository(dest: Path) -> None:
    """The files a clone would have (tracked and new, not ignored), from the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_readme_commands_work_literally_with_debians_system_python(tmp_path: Path) -> None:
    if not SYSTEM_PYTHON.exists() or not _externally_managed(SYSTEM_PYTHON):
        pytest.skip(f"needs a Debian-like {SYSTEM_PYTHON} marked EXTERNALLY-MANAGED (PEP 668)")
    if shutil.which("git") is None:
        pytest.skip("needs git to list the repository's files")
    repo, home = tmp_path / "repo", tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    _copy_repository(repo)
    assert not (repo / ".venv").exists()
    # A newcomer's shell: the system python3 first on PATH, a home of its own (the demo writes
    # to the platform data dir), pip's own configuration (a local index here) kept.
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("PIP_") or k in ("LANG", "LC_ALL", "TERM", "TMPDIR")
    }
    env.update(PATH="/usr/bin:/bin", HOME=str(home), CI="true")
    first, second = readme_commands()

    one = subprocess.run(
        ["bash", "-c", first],
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    assert "alice's open incidents" in one.stdout and "as bob" in one.stdout
    venv_python = repo / ".venv" / "bin" / "python"
    assert venv_python.exists()
    assert (
        Path(os.path.realpath(venv_python)).parent == Path(os.path.realpath(SYSTEM_PYTHON)).parent
    )

    # The second command, literally, but with pytest narrowed to one small file (the whole
    # suite is what CI runs; this test is part of it).
    two = subprocess.run(
        ["bash", "-c", second],
        cwd=repo,
        env={**env, "PYTEST_ADDOPTS": INNER_TESTS},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert f"into {repo / '.venv'}" in two.stdout  # it used the first command's .venv
    assert "== ruff" in two.stdout and "== mypy" in two.stdout and " passed" in two.stdout
    # everything went into .venv, nothing into the system Python
    assert not _has_module(SYSTEM_PYTHON, "remotetables", env)


def _has_module(python: Path, name: str, env: dict[str, str]) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({name!r}) is None)"
    return subprocess.run([str(python), "-c", code], cwd="/", env=env, check=False).returncode == 0


def _third_party_imports(path: Path) -> set[str]:
    import ast
    import sys

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "remotetables"}


def test_the_webapp_extra_installs_what_the_webapp_example_imports() -> None:
    import re
    import tomllib
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extra = project["optional-dependencies"]["webapp"]
    installs = {re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower() for req in extra}
    installs |= {
        re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower() for req in project["dependencies"]
    }
    dists = packages_distributions()
    imported = _third_party_imports(ROOT / "examples" / "webapp" / "app.py")
    assert {"starlette", "uvicorn"} <= imported
    missing = {m for m in imported if not {d.lower() for d in dists.get(m, [m])} & installs}
    assert not missing, f"examples/webapp/app.py imports {missing}, which no extra installs"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### A multi-user web app") :]
    assert "pip install -e '.[webapp]'" in section


def test_scripts_test_prints_the_reasons_of_skipped_tests() -> None:
    script = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    pytest_lines = [line for line in script.splitlines() if " -m pytest " in line]
    assert pytest_lines
    for line in pytest_lines:
        assert " -rs " in line and "-W error" in line, line

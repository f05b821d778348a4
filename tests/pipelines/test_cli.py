"""The command line as a user meets it: --version, errors that point at the format page, and a
run whose piped output is plain lines (no warnings, no colour codes, no wrapped rows)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.contract import TABLES

REPO = Path(__file__).resolve().parents[2]
FORMAT_PAGE = REPO / "docs" / "data-format.md"
runner = CliRunner()


def test_version_prints_the_installed_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"memberwise {version('memberwise')}"


def test_a_missing_required_table_points_at_the_format_page(tmp_path):
    (tmp_path / "members.csv").write_text("member_id\nM1\n")
    result = runner.invoke(app, ["run", "--data", str(tmp_path), "--as-of", "2025-12-31",
                                 "--home", str(tmp_path / "home")])  # fmt: skip
    assert result.exit_code == 2
    assert "order_lines" in result.output and "docs/data-format.md" in result.output
    assert not (tmp_path / "home").exists()  # nothing written


def test_the_format_page_documents_every_table_and_column():
    text = FORMAT_PAGE.read_text()
    for table in TABLES.values():
        assert f"### `{table.name}`" in text, table.name
        section = text.split(f"### `{table.name}`", 1)[1].split("\n### ", 1)[0]
        for column in table.column_names:
            assert f"| `{column}` |" in section, (table.name, column)


# a document outside the repository, by name or by a path that leaves it (a dataset folder,
# ../shared/data, is configurable data, not a document)
OUTSIDE = re.compile(r"DATA_CONTRACT\.md|PROGRAMME\.md|STYLE\.md|\.\./shared(?!/data)")
SKIP_DIRS = {"demo-data", "demo-home", "eval-data", "__pycache__", "node_modules"}


def _repo_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*"):
        parts = path.relative_to(REPO).parts
        if any(p.startswith(".") or p in SKIP_DIRS for p in parts[:-1]) or not path.is_file():
            continue
        if path.suffix in {".md", ".py"} or path.name == "Makefile":
            files.append(path)
    return files


def test_nothing_points_to_a_document_outside_the_repository():
    here = Path(__file__).resolve()
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in _repo_files()
        if path.resolve() != here
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not found, "\n".join(found)


def test_every_relative_link_in_the_docs_resolves_inside_the_repository():
    link = re.compile(r"\]\(([^)#\s]+)")
    broken = []
    for path in _repo_files():
        if path.suffix != ".md":
            continue
        for target in link.findall(path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{path.relative_to(REPO)} -> {target}")
    assert not broken, "\n".join(broken)


def _cli(*args: str, env: dict[str, str]) -> str:
    """Run ``memberwise ARGS`` in a fresh process with its output piped (not a terminal);
    returns stdout and stderr together, as a user piping into a file would see them."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout
    return proc.stdout


@pytest.mark.slow
def test_a_piped_run_is_plain_readable_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBERWISE_", "FORCE_COLOR"))}
    env["COLUMNS"] = "60"  # narrower than any report row: rows must still not wrap
    shop, home = tmp_path / "shop", tmp_path / "home"
    out = _cli("generate", "--out", str(shop), "--members", "150", "--seed", "3", env=env)
    out += _cli("run", "--data", str(shop), "--as-of", "2025-12-31", "--home", str(home), env=env)

    assert "Warning" not in out, out  # RuntimeWarning, UserWarning, SADeprecationWarning, ...
    assert "Failed to resolve installed pip version" not in out, out
    assert "\x1b[" not in out, out
    stamp = r"^\d\d:\d\d:\d\d "
    ingest = re.compile(stamp + r"  (\w+) +kept +[\d,]+  quarantined +[\d,]+  after as-of +[\d,]+$")
    tables = {m.group(1) for line in out.splitlines() if (m := ingest.match(line))}
    assert tables == {p.stem for p in shop.glob("*.parquet")}, out
    model = re.compile(
        stamp + r"  (\w+) +\S+ +model +\S+  baseline +\S+  -> champion: \w+ .+ v\d+$"
    )
    models = {m.group(1) for line in out.splitlines() if (m := model.match(line))}
    assert models == {"products", "churn", "coupon", "send_time", "similar"}, out

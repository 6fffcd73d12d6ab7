"""Every command is documented, and docs/CLI.md matches --help (regenerate with scripts/cli_docs.py)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

from vmr_cli.cli import cli


def test_every_command_and_option_has_help():
    for name, command in cli.commands.items():
        assert command.help and command.help.strip(), name
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.opts}"


def test_cli_reference_is_current():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_docs.py"), "--check"], cwd=ROOT)
    assert done.returncode == 0, "docs/CLI.md is stale: run python scripts/cli_docs.py"


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from vmr_cli.cli import cli; "
            "heavy = [m for m in ('torch', 'transformers', 'faiss', 'torchcodec') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"

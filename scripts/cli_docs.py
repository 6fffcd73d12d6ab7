"""Write docs/CLI.md from the commands' own --help, so the reference cannot drift.

    python scripts/cli_docs.py          # rewrite docs/CLI.md
    python scripts/cli_docs.py --check  # exit 1 if docs/CLI.md is stale (tests do this)
"""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "CLI.md"


def render() -> str:
    from vmr_cli.cli import cli

    runner = CliRunner()
    parts = ["# vmr command reference\n",
             "Generated from `--help` by `python scripts/cli_docs.py`; do not edit by hand.\n"]
    for name in [None] + sorted(cli.commands):
        args = ["--help"] if name is None else [name, "--help"]
        text = runner.invoke(cli, args, prog_name="vmr", terminal_width=100).output
        parts.append(f"## vmr {name or ''}".rstrip() + "\n\n```\n" + text.rstrip() + "\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if DOC.exists() and DOC.read_text() == text else 1)
    DOC.write_text(text)
    print(f"wrote {DOC}")

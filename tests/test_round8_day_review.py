"""The day's change of round 8 read again (2026-12-02): each test failed on the code before its fix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vmr_cli.errors import VmrError


def test_a_jsonl_line_cut_short_is_not_taken_for_an_indented_file(tmp_path):
    """A JSONL file whose later line lost its closing brace (cut short by a download, a hand edit):
    the line was said to be an indented file's ('jq -c . FILE writes an indented file so'), which
    it is not: the lines before it are records one a line.  Line 1 of an indented file still is."""
    from vmr_cli.evaluate import read_annotations

    record = {"qid": 1, "query": "a green screen", "vid": "green", "relevant_windows": [[0, 2]]}
    path = tmp_path / "ann.jsonl"
    for cut in ('{"qid": 2, "query": "a red screen", "vid": "green", "relevant_windows": [[0, 2]]',
                '{"qid": 2, "query": "a red screen",'):
        path.write_text(json.dumps(record) + "\n" + cut + "\n")
        with pytest.raises(VmrError) as raised:
            read_annotations(str(path))
        said = str(raised.value)
        assert said.startswith(f"{path}:2: ") and "indented" not in said, said
        assert "does not end on its line" in said, said
    path.write_text(json.dumps(record, indent=2) + "\n")
    with pytest.raises(VmrError, match=r":1: a JSON object that does not end on its line; .*indented file so"):
        read_annotations(str(path))

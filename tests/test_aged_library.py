"""A library after a year of daily use (round 10): what the everyday commands read of its history.

Thousands of searches, exports and index runs are logged through the catalog's own methods (as
the commands log them), then each command's reads are counted: the rows it takes from the
history, never seconds.  bench/aged_library.py measures the same at 100, 10,000 and 50,000
searches; TESTING.md ("Round 10: a library after a year of use") maps each case to its test.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import vmr, vmr_json

SEARCHES = 300  # logged after the exports below: a year's history, small enough for a test


@pytest.fixture
def indexed(videos, tiny_model):
    vmr_json("index", videos, "--model", tiny_model)
    return videos


def log_searches(n: int, like: dict) -> None:
    """n searches logged as 'vmr search' logs them, each with like's results at times of its own."""
    from vmr_cli.library import Library

    lib = Library()
    try:
        for i in range(n):
            results = [dict(r, start=r["start"] + 0.01 * (i + 1), end=r["end"] + 0.01 * (i + 1))
                       for r in like["results"]]
            lib.catalog.log_search(f"query {i}", like["model"], like["options"], like["stats"], results)
    finally:
        lib.close()


def count_rows(monkeypatch, cls, name: str) -> list:
    """Every row the generator method cls.name yields, counted as it is read."""
    read = []
    real = getattr(cls, name)

    def counted(self, *args, **kwargs):
        for row in real(self, *args, **kwargs):
            read.append(row)
            yield row

    monkeypatch.setattr(cls, name, counted)
    return read


def test_an_index_run_reads_no_search_logged_since_cuts_were_logged_with_their_prints(indexed, tmp_path,
                                                                                      monkeypatch):
    """Every 'vmr index' (a cron job's too) read every result of every search ever logged, and
    built a cut's name for each, as soon as one file in its folders was named as a cut is (a cut
    moved there, an --out folder under an indexed one): 3.1 s a run at 50,000 searches.  Only
    the searches logged before the first export that logged its cuts' prints can have cuts known
    by their names alone (the first vmr's); a cut is recognised by its print first."""
    from vmr_cli.catalog import Catalog
    from vmr_cli.library import Library

    first = vmr_json("search", "red", "--top-k", "3")
    old_cut = vmr_json("export", "1", "--out", indexed / "cuts")["exported"][0]["path"]
    lib = Library()
    lib.catalog._conn.execute("DELETE FROM operations WHERE command='export'")  # as the first vmr left it
    like = lib.catalog.search(first["search_id"])
    lib.close()
    printed = vmr_json("export", "2", "--out", tmp_path / "elsewhere")["exported"][0]["path"]
    log_searches(SEARCHES, dict(like, results=[dict(r) for r in like["results"]]))
    shutil.copy(printed, indexed / "sub")  # a cut logged with its print, moved into an indexed folder
    read = count_rows(monkeypatch, Catalog, "logged_moments")
    summary = vmr_json("index", indexed)
    assert (summary["added"], summary["own_outputs"]) == (0, 2), summary  # both cuts passed over
    assert 0 < len(read) <= len(first["results"]), len(read)  # the first vmr's search's, no later one's
    assert old_cut.startswith(str(indexed))


def test_a_cut_logged_with_its_print_is_known_without_reading_any_search(indexed, tmp_path, monkeypatch):
    from vmr_cli.catalog import Catalog

    found = vmr_json("search", "red", "--top-k", "3")
    cut = vmr_json("export", "1", "--out", tmp_path / "elsewhere")["exported"][0]["path"]
    log_searches(50, dict(found, model=None, options={}, stats={}))
    shutil.copy(cut, indexed)  # moved into the indexed folder, its name a cut's
    read = count_rows(monkeypatch, Catalog, "logged_moments")
    code, out, err = vmr("index", indexed)
    assert out.startswith("added 0,") and "passed over 1 file vmr made itself" in err, (out, err)
    assert read == []


def test_the_last_search_by_a_time_is_found_by_bisection(tmp_path):
    from vmr_cli.catalog import Catalog

    catalog = Catalog(str(tmp_path / "catalog.db"))
    assert catalog.last_search_by(1e12) == 0  # none logged
    for i in range(1, 201):
        search_id = catalog.log_search(f"q{i}", "m", {}, {}, [])
        catalog._conn.execute("UPDATE searches SET created_at=? WHERE id=?", (1000.0 + i, search_id))
    catalog._conn.execute("DELETE FROM searches WHERE id BETWEEN 50 AND 120")  # gaps in the ids
    looked = []
    catalog._conn.set_trace_callback(looked.append)
    assert [catalog.last_search_by(t) for t in (0, 1001, 1049.5, 1100, 1121, 1200, 5000)] == [
        0, 1, 49, 49, 121, 200, 200]
    assert len(looked) < 7 * 12  # some log2(200) rows each, not the table
    catalog.close()


def test_an_export_reads_only_the_exports_of_its_own_search(indexed, tmp_path, monkeypatch):
    """'vmr export' looks for what earlier exports of the same search cut into the same folder
    (README: '(cut before)'); it decoded every export ever logged to find them, 0.1 s a command
    at 5,000 exports.  SQLite picks out the search's own; the cuts made before are still found."""
    from vmr_cli.catalog import Catalog
    from vmr_cli.library import Library

    vmr_json("search", "red", "--top-k", "3")
    model = vmr_json("export", "1", "--out", tmp_path / "cuts")
    lib = Library()
    [logged] = lib.catalog.operations("export")
    for i in range(200):  # a year's exports of other searches, logged as export logs them
        lib.catalog.log_operation("export", dict(logged["arguments"], search_id=1000 + i),
                                  dict(logged["summary"], search_id=1000 + i), logged["started_at"])
    lib.close()
    decoded = []
    real = Catalog.operations

    def counted(self, *args, **kwargs):
        rows = real(self, *args, **kwargs)
        decoded.extend(rows)
        return rows

    monkeypatch.setattr(Catalog, "operations", counted)
    again = vmr_json("export", "1", "2", "--out", tmp_path / "cuts")
    assert [(e["rank"], bool(e.get("existing"))) for e in again["exported"]] == [(1, True), (2, False)]
    assert again["exported"][0]["path"] == model["exported"][0]["path"]
    # the first export of this search, no other's (looked for before and after the folder's lock)
    assert {op["summary"]["search_id"] for op in decoded} == {1} and len(decoded) <= 2, len(decoded)


def test_an_sqlite_without_json_functions_still_finds_a_searchs_exports(tmp_path):
    """Where SQLite was built without its JSON functions, the exports are filtered in Python."""
    import sqlite3

    from vmr_cli.catalog import Catalog

    catalog = Catalog(str(tmp_path / "catalog.db"))
    for search_id in (1, 2, 1):
        catalog.log_operation("export", {"search_id": search_id}, {"search_id": search_id, "folder": "f"}, 0.0)
    real = catalog._conn

    class WithoutJson:
        def execute(self, sql, *args):
            if "json_extract" in sql:
                raise sqlite3.OperationalError("no such function: json_extract")
            return real.execute(sql, *args)

    expected = [op["id"] for op in catalog.operations("export", search_id=1)]
    catalog._conn = WithoutJson()
    assert [op["id"] for op in catalog.operations("export", search_id=1)] == expected == [1, 3]
    catalog._conn = real
    catalog.close()


def test_the_search_history_can_be_pruned_and_its_space_is_given_back(indexed, tmp_path):
    """Every search is logged, about 2 KB each with its results (90 MB after 50,000), and nothing
    ever dropped them: 'vmr searches --keep N' forgets all but the newest N and compacts the
    catalog.  The ids go on from the highest ever handed out; a cut made before stays known."""
    import os
    import sqlite3

    from vmr_cli.library import Library

    found = vmr_json("search", "red", "--top-k", "3")
    cut = vmr_json("export", "1", "--out", indexed / "cuts")["exported"][0]["path"]
    lib = Library()
    like = lib.catalog.search(found["search_id"])
    lib.close()
    log_searches(SEARCHES, like)
    catalog = os.path.join(os.environ["VMR_LIBRARY"], "catalog.db")
    pages = sqlite3.connect(catalog).execute("PRAGMA page_count").fetchone()[0]
    code, out, err = vmr("searches", "--keep", "5", "--limit", "0")
    assert f"forgot {SEARCHES + 1 - 5} searches, kept the newest 5; " in err and "MB freed" in err, err
    assert [line.split()[0] for line in out.splitlines()[1:]] == [str(SEARCHES + 1 - i) for i in range(5)]
    conn = sqlite3.connect(catalog)
    assert conn.execute("SELECT count(*), min(search_id) FROM results").fetchone() == (5 * 3, SEARCHES + 1 - 4)
    assert conn.execute("PRAGMA page_count").fetchone()[0] < pages / 4  # given back, not only freed
    conn.close()
    code, _, err = vmr("export", "1", "--search", found["search_id"], expect=1)
    assert f"no search with id {found['search_id']}" in err
    assert vmr_json("search", "green")["search_id"] == SEARCHES + 2  # never an id handed out before
    assert vmr_json("index", indexed)["own_outputs"] == 1 and os.path.isfile(cut)  # the cut still known
    assert vmr_json("searches", "--keep", "0")["forgotten"] == 5 + 1
    code, _, err = vmr("searches", "--keep", "0")
    assert "nothing to forget: no more than 0 searches logged" in err and "no searches logged yet" in err
    assert vmr("export", "1", expect=1)[2].startswith("Error: no search logged yet")


def test_index_runs_with_nothing_to_do_are_counted_in_one_entry_of_the_log(indexed, tiny_model):
    """A cron job's 'vmr index' logged a row every run, with every note it printed (each file
    reached by a second name, each folder kept), which nothing reads: a year of hourly runs
    beside 1,000 hard-linked files, 1.3 GB.  Runs that did nothing and say what the last one said
    are counted in its entry; a run that does something, or says something else, has its own."""
    import os

    from conftest import make_video

    from vmr_cli.library import Library

    os.link(indexed / "green.mp4", indexed / "sub" / "green_link.mp4")  # the same file by two names
    first = vmr_json("index", indexed)
    assert first["same_file"] and first["unchanged"] == 3
    for _ in range(4):
        assert vmr_json("index") == first  # what the user sees is each run's own
    make_video(indexed / "new.mp4", [("yellow", 2.0)])
    assert vmr_json("index")["added"] == 1
    assert vmr_json("index")["unchanged"] == 4
    lib = Library()
    runs = [(op["summary"]["added"], op["summary"]["unchanged"], op["summary"].get("runs"))
            for op in lib.catalog.operations("index")]
    lib.close()
    # the first index (3 added); the five idle runs in one entry; the new file; the run after it
    assert runs == [(3, 0, None), (0, 3, 5), (1, 3, None), (0, 4, None)], runs

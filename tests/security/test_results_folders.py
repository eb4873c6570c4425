"""Findings 6, 7 and 13 (half-written folders): a run always gets a new folder inside the
results root, names cannot escape it, no run reuses another's folder, and a start that fails
before its first round leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

import fedsim.engine
from fedsim.cli import main
from fedsim.config.errors import ConfigError
from fedsim.deploy import server_app as deploy_server_app
from fedsim.run_dirs import RUN_FILE, check_run_name, claim_run_dir, new_run_dir

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs" / "quickstart.toml")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "", "/etc/x", "a\\b", ".hidden",
                                  "x..y", "name with space", "a" * 101])
def test_run_names_that_could_escape_the_results_root_are_refused(tmp_path, capsys,
                                                                  monkeypatch, name) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    code = main(["run", QUICKSTART, "--engine", "inprocess", "--set", f"name={name}",
                 "--set", "train.rounds=1", "--set", "output.plots=false"])
    assert code == 2
    assert "name = " in capsys.readouterr().err
    assert _files(tmp_path) == ["a", "a/b"]  # nothing written anywhere


@pytest.mark.parametrize("name", ["quickstart", "dno-fedlion", "zo_seeds.v2", "run+1", "A9"])
def test_ordinary_run_names_are_accepted(name) -> None:
    assert check_run_name(name) == name


def test_runs_started_in_the_same_second_get_distinct_new_folders(tmp_path) -> None:
    dirs = [new_run_dir(None, str(tmp_path / "results"), "same") for _ in range(5)]
    assert len(set(dirs)) == 5
    assert all(d.parent == tmp_path / "results" and d.is_dir() for d in dirs)


def test_claim_refuses_a_folder_another_run_used(tmp_path) -> None:
    for used in (RUN_FILE, "metrics.jsonl", "checkpoint.npz", "summary.json"):
        d = tmp_path / used
        d.mkdir()
        (d / used).write_text("{}")
        with pytest.raises(ConfigError, match="results-dir"):
            claim_run_dir(d, {"engine": "deploy"})
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.toml").write_text("x")  # what the submitter wrote on loopback
    (fresh / "server.log").write_text("")
    claim_run_dir(fresh, {"engine": "deploy", "superlink_run_id": 7})
    assert json.loads((fresh / RUN_FILE).read_text())["superlink_run_id"] == 7


def test_deployed_run_never_reuses_an_existing_results_folder(tmp_path) -> None:
    """The deployment ServerApp given another run's folder as ``results-dir`` refuses it
    before touching anything (today it overwrote config.toml and resumed the checkpoint)."""
    old = tmp_path / "old-run"
    assert main(["run", QUICKSTART, "--out", str(old), "--engine", "inprocess", "--set",
                 "train.rounds=1", "--set", "output.plots=false"]) == 0
    before = {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()}
    ctx = Context(run_id=99, node_id=0, node_config={}, state=RecordDict(),
                  run_config={"results-dir": str(old), "config-toml": 'name = "intruder"\n'})
    with pytest.raises(ConfigError, match="results-dir"):
        deploy_server_app.main(grid=None, context=ctx)
    assert {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()} == before


def test_failed_start_leaves_no_half_written_folder(tmp_path, monkeypatch) -> None:
    def engine_fails(*args, **kwargs):
        raise RuntimeError("the engine failed to start")

    monkeypatch.setattr(fedsim.engine, "run_engine", engine_fails)
    results = tmp_path / "results"
    with pytest.raises(RuntimeError, match="failed to start"):
        main(["run", QUICKSTART, "--set", f"output.dir={results}"])
    assert not results.exists() or _files(results) == []
    out = tmp_path / "given"
    with pytest.raises(RuntimeError, match="failed to start"):
        main(["run", QUICKSTART, "--out", str(out)])
    assert not out.exists()

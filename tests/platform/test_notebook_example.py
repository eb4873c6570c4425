"""examples/notebook_api.py runs as a script with tiny settings: three strategies, a table, a
plot of accuracy against uplink."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "notebook_api.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_notebook_example_runs_three_strategies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEDSIM_EXAMPLE_ROUNDS", "2")
    monkeypatch.setenv("FEDSIM_EXAMPLE_ENGINE", "inprocess")
    monkeypatch.setenv("FEDSIM_EXAMPLE_OUT", str(tmp_path / "out"))
    namespace = runpy.run_path(str(EXAMPLE), run_name="__main__")
    results = namespace["results"]
    assert list(results) == ["fedavg", "fedlion", "zsignfedavg"]
    table = capsys.readouterr().out.splitlines()
    for name, result in results.items():
        assert result.run_dir.parent == tmp_path / "out"
        assert [row["round"] for row in result.metrics] == [0, 1, 2]
        (line,) = [row for row in table if row.startswith(f"{name} ")]
        assert f"{result.summary['final_accuracy']:.3f}" in line
    # one sign per parameter uplink against 32-bit floats: the table shows what the plot does
    assert results["zsignfedavg"].summary["mean_uplink_payload_bits_per_param"] < 1.01
    assert (results["zsignfedavg"].summary["total_uplink_bytes"]
            < results["fedavg"].summary["total_uplink_bytes"] / 10)
    plot = tmp_path / "out" / "accuracy_vs_uplink.png"
    assert plot.read_bytes().startswith(PNG_MAGIC) and plot.stat().st_size > 10_000

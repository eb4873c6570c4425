"""fedsim's own round loop is metered by the same layer as a foreign Flower app (MeteringGrid):
every row's bytes are what the replies weigh by Flower's own count, the federated evaluation's
apart from the training's, and the partition query's in no row."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

import fedsim
from fedsim.engine.inprocess import InProcessGrid
from fedsim.engine.metering_grid import message_kind

SMALL = {"task.num_clients": 3, "train.clients_per_round": 3, "train.rounds": 3,
         "eval.federated_every": 2, "output.plots": False}


def flower_bytes(msg) -> int:
    """Flower's own count of a message's size (docs/design-notes.md#message-size-on-the-wire)."""
    return sum(len(o.deflate()) for o in get_all_nested_objects(msg).values())


def test_rows_hold_what_the_replies_weigh(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    weighed: dict[str, list[int]] = {}
    carry = InProcessGrid.send_and_receive

    def weighing(self, messages, *, timeout=None):
        messages = list(messages)
        replies = list(carry(self, messages, timeout=timeout))
        kind = message_kind(messages[0]) if messages else ""
        weighed.setdefault(kind, []).append(sum(flower_bytes(r) for r in replies))
        return replies

    monkeypatch.setattr(InProcessGrid, "send_and_receive", weighing)
    result = fedsim.run("quickstart", engine="inprocess", out=tmp_path / "run",
                        progress=False, **SMALL)
    rows = result.metrics
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    assert len(weighed["query"]) == 1 and len(weighed["train"]) == 3
    assert [r["uplink_bytes"] for r in rows[1:]] == weighed["train"]
    assert all(b > 3 * 4 * r["num_params"] for b, r in zip(weighed["train"], rows[1:],
                                                            strict=True))
    # federated evaluation in rounds 2 and 3 (every 2, and the last), metered apart
    assert [r["evaluate_uplink_bytes"] for r in rows[1:]] == [0, *weighed["evaluate"]]
    assert rows[1]["evaluate_downlink_bytes"] == 0 < rows[2]["evaluate_downlink_bytes"]
    assert rows[-1]["cumulative_uplink_bytes"] == sum(weighed["train"])
    assert result.summary["total_uplink_bytes"] == sum(weighed["train"])

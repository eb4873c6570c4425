"""Checkpoints of a foreign Flower app's run (``fedsim.simulate``), and what resume offers.

A stock ``FedAvg.start`` ServerApp and a ClientApp over three tiny tensors run on the in-process
engine; the ClientApp keeps a copy of every model it received, so the saved models can be
compared with what the clients really got, bit for bit."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

import fedsim
from fedsim.app_checkpoint import APP_CHECKPOINT_FILE, FINAL_MODEL_FILE, load_app_model
from fedsim.cli import main
from fedsim.config.errors import ConfigError
from fedsim.simulation import simulate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower-app"
NUM_CLIENTS = 3
# (server round, phase, partition) -> the arrays that client received
RECEIVED: dict[tuple[int, str, int], dict[str, np.ndarray]] = {}
FINAL: dict[str, np.ndarray] = {}  # the model Strategy.start returned to the ServerApp

client_app = ClientApp()


def record_of(named: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in named.items()})


def _receive(msg: Message, context: Context, phase: str) -> dict[str, np.ndarray]:
    arrays = {k: a.numpy().copy() for k, a in msg.content["arrays"].items()}
    rnd = int(msg.content["config"]["server-round"])
    RECEIVED[(rnd, phase, int(context.node_config["partition-id"]))] = arrays
    return arrays


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    arrays = _receive(msg, context, "train")
    rng = np.random.default_rng(pid)  # a client-specific, non-trivial step
    new = {k: (v - 0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
           for k, v in arrays.items()}
    return Message(RecordDict({"arrays": record_of(new), "metrics": MetricRecord(
        {"train_loss": float(pid), "num-examples": pid + 1})}), reply_to=msg)


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    _receive(msg, context, "evaluate")
    return Message(RecordDict({"metrics": MetricRecord({"eval_loss": 1.0, "num-examples": 1})}),
                   reply_to=msg)


server_app = ServerApp()


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    rng = np.random.default_rng(7)
    initial = {"w": rng.standard_normal((4, 3)).astype(np.float32),
               "b": rng.standard_normal(3).astype(np.float32)}
    result = FedAvg(min_available_nodes=NUM_CLIENTS).start(
        grid=grid, initial_arrays=record_of(initial),
        num_rounds=int(context.run_config["num-server-rounds"]))
    FINAL.clear()
    FINAL.update({k: a.numpy().copy() for k, a in result.arrays.items()})


def run(tmp_path: Path, rounds: int, every: int) -> fedsim.RunResult:
    RECEIVED.clear()
    return simulate(server_app, client_app, NUM_CLIENTS, engine="inprocess",
                    run_config={"num-server-rounds": rounds}, out=tmp_path / "run",
                    progress=False, checkpoint_every=every)


def same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        and a[k].tobytes() == b[k].tobytes() for k in a)


def test_checkpoint_holds_what_the_clients_received(tmp_path: Path) -> None:
    result = run(tmp_path, rounds=3, every=2)
    saved = load_app_model(result.run_dir / APP_CHECKPOINT_FILE)
    assert (saved["round"], saved["phase"], saved["final"]) == (2, "train", False)
    assert saved["same_for_all"] is True
    for pid in range(NUM_CLIENTS):
        assert same_bits(saved["arrays"]["arrays"], RECEIVED[(2, "train", pid)])
    assert not same_bits(saved["arrays"]["arrays"], RECEIVED[(3, "train", 0)])  # it moved
    assert saved["metrics"] == result.metrics[:3]  # rows 0, 1, 2
    assert same_bits(result.arrays(checkpoint=True), RECEIVED[(2, "train", 0)])

    final = load_app_model(result.run_dir / FINAL_MODEL_FILE)
    assert (final["round"], final["phase"], final["final"]) == (3, "evaluate", True)
    assert final["metrics"] == result.metrics
    # the last model sent is the one Strategy.start handed back to the ServerApp
    assert same_bits(result.arrays(), FINAL)
    assert same_bits(fedsim.load(result.run_dir).arrays(), RECEIVED[(3, "evaluate", 2)])


def test_checkpoint_every_zero_saves_nothing(tmp_path: Path) -> None:
    result = run(tmp_path, rounds=1, every=0)
    assert not (result.run_dir / APP_CHECKPOINT_FILE).exists()
    assert not (result.run_dir / FINAL_MODEL_FILE).exists()
    with pytest.raises(ValueError, match="holds no saved model"):
        result.arrays()
    with pytest.raises(ConfigError, match="checkpoint_every = -1"):
        run(tmp_path / "bad", rounds=1, every=-1)


class Payload:
    """Unpickling this would create ``marker``: the proof that a load ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("how", ["npz-object-entry", "raw-pickle"])
def test_crafted_pickle_in_a_checkpoint_is_refused(tmp_path: Path, how: str) -> None:
    result = run(tmp_path, rounds=2, every=1)
    marker = tmp_path / "ran"
    path = result.run_dir / APP_CHECKPOINT_FILE
    if how == "npz-object-entry":
        np.savez(path, allow_pickle=True,
                 __state__=np.array([Payload(marker)], dtype=object))
    else:
        path.write_bytes(pickle.dumps({"arrays": Payload(marker)}))
    with pytest.raises(ValueError, match=APP_CHECKPOINT_FILE):
        result.arrays(checkpoint=True)
    assert not marker.exists()
    assert same_bits(result.arrays(), FINAL)  # the other file is untouched and still read


def test_resume_is_refused_with_the_reason(tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    assert main(["simulate", str(EXAMPLE), "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "cannot resume" in err and "strategy" in err
    assert "fedsim.load(DIR).arrays()" in err


def test_a_model_per_client_is_told_apart() -> None:
    from flwr.app import MessageType

    from fedsim.app_checkpoint import sent_model

    def to(node: int, w: np.ndarray) -> Message:
        return Message(RecordDict({"arrays": record_of({"w": w})}), dst_node_id=node,
                       message_type=MessageType.TRAIN)

    w = np.arange(6, dtype=np.float32)
    same = sent_model([to(1, w), to(2, w.copy())], 4, "train")  # equal bits, other objects
    assert same is not None and same.same_for_all and same.round == 4
    other = w.copy()
    other[5] = np.nextafter(other[5], np.float32(9))  # one bit apart
    apart = sent_model([to(1, w), to(2, other)], 4, "train")
    assert apart is not None and not apart.same_for_all
    assert apart.records["arrays"]["w"].numpy().tobytes() == w.tobytes()  # the first's
    assert sent_model([Message(RecordDict({}), dst_node_id=1,
                               message_type=MessageType.TRAIN)], 1, "train") is None


@pytest.mark.slow
def test_ray_engine_saves_the_same_model_as_the_clients_got_in_process(tmp_path: Path) -> None:
    RECEIVED.clear()
    on_ray = simulate(server_app, client_app, NUM_CLIENTS, engine="ray",
                      run_config={"num-server-rounds": 2}, out=tmp_path / "ray",
                      progress=False, checkpoint_every=2, engine_options={"num_cpus": 2})
    in_process = run(tmp_path, rounds=2, every=2)  # its clients fill RECEIVED
    assert same_bits(on_ray.arrays(checkpoint=True), RECEIVED[(2, "train", 1)])
    assert same_bits(on_ray.arrays(), in_process.arrays())
    assert same_bits(on_ray.arrays(), FINAL)

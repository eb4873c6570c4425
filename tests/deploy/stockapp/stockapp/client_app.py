"""Stock ClientApp for deployment tests: logistic regression on a partition of digits.

NumPy only (no torch), so each per-message ``flwr-clientapp`` process starts quickly.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


def _data(context: Context) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    pid = int(context.node_config["partition-id"])
    n = int(context.node_config["num-partitions"])
    idx = np.random.default_rng(0).permutation(len(y))[pid::n]
    return (x[idx] / 16.0).astype(np.float32), y[idx]


def _loss_grad(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray):
    z = x @ w.T + b
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    p[np.arange(len(y)), y] -= 1.0
    p /= len(y)
    return loss, p.T @ x, p.sum(axis=0), z.argmax(axis=1)


@app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"]
    w, b = arrays["weight"].numpy().copy(), arrays["bias"].numpy().copy()
    x, y = _data(context)
    loss = 0.0
    for _ in range(20):
        loss, gw, gb, _ = _loss_grad(w, b, x, y)
        w -= 0.5 * gw
        b -= 0.5 * gb
    out = ArrayRecord({"weight": Array(w.astype(np.float32)), "bias": Array(b.astype(np.float32))})
    metrics = MetricRecord({"train-loss": loss, "num-examples": len(y)})
    return Message(RecordDict({"arrays": out, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"]
    x, y = _data(context)
    loss, _, _, pred = _loss_grad(arrays["weight"].numpy(), arrays["bias"].numpy(), x, y)
    metrics = MetricRecord({"eval-loss": loss, "eval-acc": float((pred == y).mean()),
                            "num-examples": len(y)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)

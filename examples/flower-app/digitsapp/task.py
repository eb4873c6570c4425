"""digitsapp: the model, the data and the training loop (PyTorch, scikit-learn's digits)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

TEST_SIZE = 297  # held out for the server's central evaluation


class Net(nn.Module):
    """A small MLP for 8x8 digit images (64 pixels, 10 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def new_model(seed: int) -> Net:
    """The initial global model, the same for the same seed."""
    torch.manual_seed(seed)
    return Net()


_DIGITS: tuple[np.ndarray, np.ndarray] | None = None


def digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits, shuffled once with a fixed seed (cached per process)."""
    global _DIGITS
    if _DIGITS is None:
        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(y))
        _DIGITS = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int64)
    return _DIGITS


def load_data(partition_id: int, num_partitions: int,
              batch_size: int = 32) -> tuple[DataLoader, DataLoader]:
    """Partition ``partition_id`` of the training digits (IID), split 80/20 into train/val."""
    x, y = digits()
    x, y = x[TEST_SIZE:][partition_id::num_partitions], y[TEST_SIZE:][partition_id::num_partitions]
    cut = int(0.8 * len(y))
    train = TensorDataset(torch.from_numpy(x[:cut]), torch.from_numpy(y[:cut]))
    val = TensorDataset(torch.from_numpy(x[cut:]), torch.from_numpy(y[cut:]))
    return DataLoader(train, batch_size=batch_size, shuffle=True), DataLoader(val, batch_size)


def load_centralized_dataset() -> DataLoader:
    """The held-out digits the server evaluates the global model on."""
    x, y = digits()
    return DataLoader(TensorDataset(torch.from_numpy(x[:TEST_SIZE]),
                                    torch.from_numpy(y[:TEST_SIZE])), batch_size=128)


def train(net: Net, trainloader: DataLoader, epochs: int, lr: float, seed: int) -> float:
    """Local SGD; ``seed`` fixes the batch order. Returns the mean training loss."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(trainloader.dataset, batch_size=trainloader.batch_size, shuffle=True,
                        generator=generator)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    net.train()
    total, batches = 0.0, 0
    for _ in range(epochs):
        for images, labels in loader:
            optimizer.zero_grad()
            loss = criterion(net(images), labels)
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
    return total / max(1, batches)


def test(net: Net, loader: DataLoader) -> tuple[float, float]:
    """Mean loss and accuracy of ``net`` on ``loader``."""
    criterion = nn.CrossEntropyLoss(reduction="sum")
    net.eval()
    loss, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            logits = net(images)
            loss += criterion(logits, labels).item()
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
    return loss / seen, correct / seen

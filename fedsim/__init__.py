"""fedsim: a federated-learning platform for communication-efficient training (Flower + Ray)."""

__version__ = "0.1.0"

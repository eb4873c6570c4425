"""Tasks: datasets and their federated partitions, models, and the local training step."""

"""Federated algorithms: each module holds a Flower Strategy (server half) and its client half."""

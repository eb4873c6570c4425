"""The results folder of a run: resolved config, metrics.jsonl, summary.json and plots."""

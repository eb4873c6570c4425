"""digitsapp: a Flower / PyTorch app on scikit-learn's bundled digits (no download)."""

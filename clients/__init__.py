"""The Flower ClientApp and the client runtime (partition loading, caching, device profile)."""

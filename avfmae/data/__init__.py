"""Datasets: registry, synthetic generator, indexing, schemas, torch Datasets."""

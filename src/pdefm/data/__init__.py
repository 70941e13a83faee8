"""Datasets: generation specs, on-disk generation, cards, readers."""

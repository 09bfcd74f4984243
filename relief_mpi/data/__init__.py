"""Datasets: loaders of the original file layouts, windows, splits and federated partitions."""

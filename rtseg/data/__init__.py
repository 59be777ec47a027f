"""Datasets, augmentation and dataset checks (numpy + OpenCV only, no torch)."""

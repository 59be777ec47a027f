"""Evaluation: confusion-matrix metrics and dataset evaluation of any backend."""

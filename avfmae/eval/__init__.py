"""Evaluation: metrics, aggregation, report."""

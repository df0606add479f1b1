"""Reconcilers: one per kind, each computing children and status from the cache and the reports."""

"""Curated tables: the contract between ingest and training."""

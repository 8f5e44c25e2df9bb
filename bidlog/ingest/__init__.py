"""Ingest and retention: bids imported from other systems, and old rows pruned."""

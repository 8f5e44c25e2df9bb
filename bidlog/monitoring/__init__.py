"""Monitoring: test bids, scheduled health checks, alerts and their notifications."""

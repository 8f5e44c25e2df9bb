"""Monitoring: test bids, scheduled health checks, alerts and their notifications.

Also the buyer pages and the buyer API, which show each buyer with its health badge, alerts
and latest bids, so they sit here, above the log they read.
"""

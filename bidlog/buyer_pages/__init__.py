"""The buyer pages and the buyer API: each buyer with its health, alerts, charts and bids.

They sit above the capabilities they read (routing's eligibility check, monitoring's health
and test bids, reports' charts), because buyers, below bidlog, cannot import the log.
"""

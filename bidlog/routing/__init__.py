"""Routing: admit a call's buyers (limits, eligibility), ask them (strategies), record the call.

Admission first (``limits``, ``eligibility``), then the waterfall and the highest-bid auction
(``strategies``), then the write of the call and its bids (``record``, with ``spool`` when the
database is away), and the route API on top (``api``).
"""

"""Reports: the rollups, the report services, the overview, bids, calls and report pages, CSV
and the report API."""

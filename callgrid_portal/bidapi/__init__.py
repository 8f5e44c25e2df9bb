"""The CallGrid Bid API: phone numbers, the code catalog, and the HTTP client. No database."""

"""CallGrid Portal: the control room of a pay-per-call publisher."""

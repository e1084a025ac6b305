"""Use cases. Ports come in through constructors; no adapter is imported here."""

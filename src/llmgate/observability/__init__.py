"""Observability: metrics, access-log entries and the batch processor that delivers them."""

"""Talking to a model: the structured client, transport retries and re-asks, rate limits, context sizes, and the
embedded local model."""

"""The state store (SQLite under the KB, or the Postgres database of ``state_url``): sources' states, LLM calls,
the response cache, cycles, batches."""

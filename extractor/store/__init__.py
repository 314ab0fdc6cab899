"""The state store (SQLite under the KB): sources' states, LLM calls, the response cache, cycles, batches."""

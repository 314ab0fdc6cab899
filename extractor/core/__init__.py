"""Records every layer shares, the error base, settings, redaction and prices: no I/O, no imports from above."""

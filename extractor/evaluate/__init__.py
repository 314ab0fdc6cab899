"""``extractor eval``: quality measured on recorded runs that people reviewed."""

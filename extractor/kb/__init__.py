"""The knowledge base on disk: sources, claim files, YAML, the index, git plumbing, file writes, locks and the
private state folder."""

"""Review in git: extraction branches, accept and reject, publishing, provenance, the review page, validation."""

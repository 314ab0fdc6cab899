"""extractor: keeps a git knowledge base growing from an inbox of sources."""

__version__ = "0.1.0"

"""Turning papers, web pages and feeds into inbox sources."""

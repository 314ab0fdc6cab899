"""Running: the one per-source service, worker processes, the scheduler's cycles, and batch mode."""

"""From an extraction result to one commit: the commit format, planning files, applying them with a journal."""

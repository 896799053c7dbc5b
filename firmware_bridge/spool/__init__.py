"""Store and forward: every point is committed to a local SQLite spool before any network write."""

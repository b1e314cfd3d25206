"""One phone's directory: its lock, local time, the SQLite stores, import, receipts, tombstones, work copies."""

"""The forget runner: the engine, selectors, the journal and recovery, the writing session, status."""

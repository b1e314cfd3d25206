"""The core: errors, atomic files, crash points, safetensors, the ledger and the day timeline, fitting, keys, and
the two protocols everything above is written against (a forgetting method, a model family). torch only."""

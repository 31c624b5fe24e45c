// Scheduler module: see Docs/architecture.md.

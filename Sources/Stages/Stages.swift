// Stages module: see Docs/architecture.md.

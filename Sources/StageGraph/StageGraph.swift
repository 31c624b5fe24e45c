// StageGraph module: see Docs/architecture.md.

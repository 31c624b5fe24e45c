// CPUBackend module: see Docs/architecture.md.

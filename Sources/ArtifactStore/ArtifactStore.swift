// ArtifactStore module: see Docs/architecture.md.

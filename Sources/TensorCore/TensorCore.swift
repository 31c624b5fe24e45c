// TensorCore module: see Docs/architecture.md.

// The conformance table (Inputs, OpCases, mismatch, …) lives in BackendConformance so `hprune selftest` and the
// CUDA self-check share it; every test file here sees it through this one re-export.
@_exported import BackendConformance

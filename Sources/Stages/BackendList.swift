// The backends a run can choose from: CUDA (when a GPU passes its self-check), the CPU kernels, the scalar
// reference. Kept here, where the pipeline meets the numeric half, so neither backend module knows the other.
import CPUBackend
import CUDABackend
import TensorCore

extension BackendRegistry {
    /// cuda, cpu, reference — in order of preference for `auto`.
    public static var all: BackendRegistry { BackendRegistry([CUDABackendProvider()] + standard.providers) }
}

// A Linear weight laid out once in a backend's own GEMM format for inference (`Backend.prepareLinearWeight`),
// so the repacking every `linear` call would redo happens once per model instead of once per call.

/// A Linear weight W (N,K) prepared by one backend for `Backend.linear(_:prepared:bias:activation:)`.
///
/// The base class keeps the dense tensor (backends with no layout of their own); a backend subclasses it to hold
/// its packed form instead, and the dense tensor can then be released. Inference only: there is no backward
/// through a prepared weight, and it cannot be updated in place.
open class PreparedLinearWeight: @unchecked Sendable {
    /// (N, K).
    public let shape: [Int]
    /// The weight's dtype (f32 or bf16); an f32 x is cast to it, as `linear` does.
    public let dtype: DType
    /// `Backend.name` of the backend that prepared it (only that backend can run it).
    public let backendName: String
    /// The dense weight, when the preparing backend keeps it (the base class always does).
    public let dense: Tensor?

    public init(shape: [Int], dtype: DType, backendName: String, dense: Tensor?) {
        self.shape = shape
        self.dtype = dtype
        self.backendName = backendName
        self.dense = dense
    }

    /// N, the output features.
    public var outFeatures: Int { shape[0] }
    /// K, the input features.
    public var inFeatures: Int { shape[1] }
    /// Bytes held on the backend.
    open var byteCount: Int { dense?.byteCount ?? 0 }
}

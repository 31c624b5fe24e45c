// Numerics identities: which kernel families compute a backend's results, each with the version of its numerics.
// The action key of every stage that computes with a backend includes the families in use and their versions
// (Scheduler/ActionKey.swift), so a run on another family, or after a family's results changed, misses the cache
// instead of reusing artifacts computed differently.
//
// The rule: bump a family's version whenever its results can change in any bit (another reduction order, a new
// rounding, a different algorithm or microkernel shape); leave it when only speed or memory changes. The tables:
//   tensorcore           `tensorCoreNumericsVersion` (TensorCore.swift): host code every backend shares
//   reference            `ReferenceBackend.numericsVersion` (ReferenceBackend.swift)
//   cpu, cpu.<family>    `CPUBackend.Family.numericsVersion` (CPUBackend/CPUKernelFamilies.swift)
//   cuda, cuda.<family>  `KernelFamily.all` and `CUDABackendProvider.numerics()` (CUDABackend)

/// One kernel family's identity and numerics version, e.g. `cpu.avx512` 1.
public struct NumericsFamily: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Dotted name: backend, then family (`cpu.avx512_bf16`, `cuda.attention`).
    public let identity: String
    /// Bumped whenever the family's results change.
    public let version: Int

    public init(_ identity: String, _ version: Int) {
        self.identity = identity
        self.version = version
    }

    public var description: String { "\(identity) \(version)" }

    /// Host code every backend shares: Philox noise mapping, host casts, 4-bit packing and codebooks (`Quant`).
    public static let tensorCore = NumericsFamily("tensorcore", tensorCoreNumericsVersion)
    /// The scalar reference backend's ops (plain loops, f64 accumulation).
    public static let reference = NumericsFamily("reference", ReferenceBackend.numericsVersion)
}

extension Array where Element == NumericsFamily {
    /// identity → version, the form action keys take (an identity appears once per backend: traps otherwise).
    public var versions: [String: Int] { Dictionary(uniqueKeysWithValues: map { ($0.identity, $0.version) }) }
}

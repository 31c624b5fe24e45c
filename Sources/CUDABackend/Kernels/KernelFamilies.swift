// The list of CUDA kernel families: each is one NVRTC compilation unit (the prelude plus the family's source)
// with its kernel names, extra options and numerics version. The compile check (CUDAKernelCompileTests) walks this
// list; action keys of stages run on CUDA name every family with its version (`cuda.<name>`).

/// One NVRTC compilation unit.
public struct KernelFamily: Sendable {
    public let name: String
    /// Full CUDA C source as compiled (prelude included).
    public let source: String
    /// The family's own source, without the prelude (the Philox host check compiles it with a host shim).
    public let body: String
    /// The `extern "C"` kernels it defines.
    public let kernels: [String]
    /// Options besides the architecture (e.g. -fmad=false for Philox).
    public let options: [String]
    /// The version of the family's numerics (identity `cuda.<name>` in action keys). **Bump it when the family's
    /// results change in any bit** (its source, the prelude's conversions, or its options), so artifacts cached from
    /// the old kernels are not reused; leave it when only speed changes.
    public let numericsVersion: Int

    init(_ name: String, _ body: String, _ kernels: [String], numerics: Int, options: [String] = []) {
        self.name = name
        self.source = KernelPrelude.source + body
        self.body = body
        self.kernels = kernels
        self.numericsVersion = numerics
        self.options = options
    }

    /// Every family, in a fixed order, with its numerics version.
    public static let all: [KernelFamily] = [
        KernelFamily("layout", LayoutKernels.source, LayoutKernels.kernels, numerics: 1),
        KernelFamily("elementwise", ElementwiseKernels.source, ElementwiseKernels.kernels, numerics: 1),
        KernelFamily("rowwise", RowwiseKernels.source, RowwiseKernels.kernels, numerics: 1),
        KernelFamily("reduction", ReductionKernels.source, ReductionKernels.kernels, numerics: 1),
        KernelFamily("w4a16", W4A16Kernels.source, W4A16Kernels.kernels, numerics: 1),
        KernelFamily("attention", AttentionKernels.source, AttentionKernels.kernels, numerics: 1),
        KernelFamily("philox", PhiloxKernels.source, PhiloxKernels.kernels, numerics: 1, options: PhiloxKernels.options),
    ]

    /// The family that defines `kernel`.
    static func containing(_ kernel: String) -> KernelFamily? { all.first { $0.kernels.contains(kernel) } }

    /// Options every family gets: C++17, no implicit fast math, IEEE division and square root.
    public static let commonOptions = ["--std=c++17", "-default-device", "--prec-div=true", "--prec-sqrt=true",
                                       "--ftz=false"]
}

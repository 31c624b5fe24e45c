// The list of CUDA kernel families: each is one NVRTC compilation unit (the prelude plus the family's source)
// with its kernel names and extra options. The compile check (CUDAKernelCompileTests) walks this list.

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

    init(_ name: String, _ body: String, _ kernels: [String], options: [String] = []) {
        self.name = name
        self.source = KernelPrelude.source + body
        self.body = body
        self.kernels = kernels
        self.options = options
    }

    /// Every family, in a fixed order.
    public static let all: [KernelFamily] = [
        KernelFamily("layout", LayoutKernels.source, LayoutKernels.kernels),
        KernelFamily("elementwise", ElementwiseKernels.source, ElementwiseKernels.kernels),
        KernelFamily("rowwise", RowwiseKernels.source, RowwiseKernels.kernels),
        KernelFamily("reduction", ReductionKernels.source, ReductionKernels.kernels),
        KernelFamily("w4a16", W4A16Kernels.source, W4A16Kernels.kernels),
        KernelFamily("attention", AttentionKernels.source, AttentionKernels.kernels),
        KernelFamily("philox", PhiloxKernels.source, PhiloxKernels.kernels, options: PhiloxKernels.options),
    ]

    /// The family that defines `kernel`.
    static func containing(_ kernel: String) -> KernelFamily? { all.first { $0.kernels.contains(kernel) } }

    /// Options every family gets: C++17, no implicit fast math, IEEE division and square root.
    public static let commonOptions = ["--std=c++17", "-default-device", "--prec-div=true", "--prec-sqrt=true",
                                       "--ftz=false"]
}

// Loading a diffusers checkpoint's tensors onto a backend, in the compute dtype the user asked for.
// Linear (and patch-embedding) weights take the compute dtype; biases, norm scales and the SD3 position
// table stay f32 (the backend's matmul wants an f32 bias). Removed components' tensors are never read.

import TensorFiles
import Foundation
import ModelSpec
import TensorCore

/// The precision a model computes in.
///
/// `.bf16` stores Linear weights in bf16 and casts activations to bf16 before every matmul and attention
/// (f32 accumulation, f32 outputs); norms, modulation and residuals stay f32 — the usual mixed precision.
public enum ComputeDType: String, Sendable, Hashable, CaseIterable, Codable {
    case f32, bf16

    /// The tensor dtype of matmul operands.
    public var dtype: DType { self == .f32 ? .f32 : .bf16 }
}

/// An error while building or running a model; names the tensor or input concerned (`subject`), where it came
/// from (`source`: a file, or `<inputs>`) and how to fix it. The same shape as ModelSpec's errors, so it is that type.
public typealias ModelError = ModelSpecError

/// A Linear layer's weight (N,K): dense (f32/bf16, `Backend.linear`) or 4-bit packed (`Backend.matmulW4A16`,
/// dequantised on the fly inside the kernel; the dense weight is never materialised).
public enum LinearWeight: @unchecked Sendable {
    case dense(Tensor)
    case packed(Packed4BitWeight)

    /// (N, K).
    public var shape: [Int] {
        switch self {
        case .dense(let t): t.shape
        case .packed(let w): w.packed.shape
        }
    }

    /// Bytes held on the backend: the dense tensor, or the packed codes plus scales, zeros and code table.
    public var byteCount: Int {
        switch self {
        case .dense(let t): t.byteCount
        case .packed(let w): w.packed.byteCount + w.scale.byteCount + (w.zero?.byteCount ?? 0) + w.codebook.byteCount
        }
    }
}

/// The tensors of one model on one backend, by state_dict name.
///
/// Quantised Linear weights are held as `Packed4BitWeight`s (`packedNames`); `callAsFunction` refuses them
/// (there is no dense tensor), `linearWeight` returns either kind.
public final class WeightStore: @unchecked Sendable {
    public let backend: any Backend
    public let compute: ComputeDType
    /// Folder the weights came from (for messages).
    public let source: String
    private var tensors: [String: Tensor]
    private var packed: [String: Packed4BitWeight]
    /// Linear weights already in the backend's GEMM layout (`prepareForInference`), their dense tensors released.
    private var prepared: [String: PreparedLinearWeight] = [:]
    private let preparedLock = NSLock()
    /// Whether Linear weights are put into the backend's GEMM layout on first use (`prepareForInference`).
    public private(set) var preparesLinearWeights = false

    /// Loads every tensor in `specs` from `folder`. Linear weights (rank ≥ 2, not buffers) take `compute`'s dtype.
    ///
    /// On a host backend a tensor whose stored dtype already matches is memory-mapped, not copied.
    public init(folder: DiffusersFolder, specs: [TensorSpec], backend: any Backend, compute: ComputeDType) throws {
        self.backend = backend
        self.compute = compute
        self.source = folder.path
        var out: [String: Tensor] = [:]
        for spec in specs {
            let want: DType = (spec.shape.count >= 2 && !spec.isBuffer) ? compute.dtype : .f32
            out[spec.name] = try Self.load(spec.name, from: folder, as: want, backend: backend)
        }
        tensors = out
        packed = [:]
    }

    /// Tensors given directly (tests, and models built in memory); `packed` are 4-bit Linear weights by name.
    public init(tensors: [String: Tensor], packed: [String: Packed4BitWeight] = [:], backend: any Backend,
                compute: ComputeDType, source: String = "<memory>") {
        self.backend = backend
        self.compute = compute
        self.source = source
        self.tensors = tensors
        self.packed = packed
    }

    /// One tensor from the folder as `dtype` on `backend`.
    static func load(_ name: String, from folder: DiffusersFolder, as dtype: DType, backend: any Backend) throws -> Tensor {
        let file = try folder.file(for: name)
        let info = try file.info(name)
        let stored: DType? = switch info.dtype {
        case .f32: .f32
        case .bf16: .bf16
        case .f16: .f16
        default: nil
        }
        guard let stored else {
            throw TensorFileError(.dtypeMismatch, file: file.path, tensor: name, offset: info.fileOffset,
                                  message: "dtype \(info.dtype.rawValue) cannot be used as a weight",
                                  fix: "store this tensor as F32, BF16 or F16")
        }
        if stored == dtype, backend.device == .host, info.fileOffset % 4 == 0 {
            let storage = try HostStorage(mapping: file.path, offset: info.fileOffset, length: info.byteCount)
            return Tensor(storage: storage, shape: info.shape, dtype: dtype)
        }
        if stored == dtype {
            let bytes = try file.withBytes(name) { [UInt8]($0) }
            return try backend.tensor(bytes: bytes, shape: info.shape, dtype: dtype)
        }
        return try backend.tensor(try file.floats(name), shape: info.shape, dtype: dtype)
    }

    /// For inference only: from now on each dense Linear weight is laid out in the backend's GEMM format the first
    /// time a layer uses it (`Backend.prepareLinearWeight`) and its dense tensor is released, so no call repacks it
    /// and memory does not double. Afterwards such weights have no dense tensor (`callAsFunction` refuses them) and
    /// cannot be trained. `eagerly` prepares every Linear weight now (every dense rank-2 `*.weight`: in SD3, SD3.5
    /// and FLUX those are all Linear layers), so that a timed forward does not include the one-time packing.
    public func prepareForInference(eagerly: Bool = false) throws {
        preparedLock.withLock { preparesLinearWeights = true }
        guard eagerly else { return }
        for name in tensors.keys.sorted() where name.hasSuffix(".weight") && tensors[name]?.rank == 2 {
            _ = try preparedLinearWeight(name)
        }
    }

    /// The prepared form of the Linear weight `name`, preparing it now if needed; nil when this store does not
    /// prepare weights (`prepareForInference`) or `name` is not a dense (N,K) f32/bf16 tensor.
    public func preparedLinearWeight(_ name: String) throws -> PreparedLinearWeight? {
        try preparedLock.withLock {
            guard preparesLinearWeights else { return nil }
            if let p = prepared[name] { return p }
            guard let t = tensors[name], t.rank == 2, t.dtype == .f32 || t.dtype == .bf16 else { return nil }
            let p = try backend.prepareLinearWeight(t)
            prepared[name] = p
            tensors[name] = nil
            return p
        }
    }

    /// The dense tensor named `name`; throws naming it when it was not loaded or is a 4-bit packed weight.
    public func callAsFunction(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else {
            if let p = preparedLock.withLock({ prepared[name] }) {
                if let dense = p.dense { return dense }
                throw ModelError(source: source, subject: name,
                                 message: "this Linear weight is held in the backend's GEMM layout for inference; it has no dense tensor",
                                 fix: "load the model again without preparing it for inference to read or train this weight")
            }
            if packed[name] != nil {
                throw ModelError(source: source, subject: name,
                                 message: "this is a 4-bit quantised weight held packed (W4A16); it has no dense tensor",
                                 fix: "run it through a Linear layer, or use the model before the quantise stage")
            }
            throw ModelError(source: source, subject: name, message: "tensor not loaded (missing, or its component is removed)",
                             fix: "check config.json and the removal list")
        }
        return t
    }

    /// The Linear weight `name`, dense or packed; throws naming it when it was not loaded.
    public func linearWeight(_ name: String) throws -> LinearWeight {
        if let w = packed[name] { return .packed(w) }
        return .dense(try self(name))
    }

    /// Whether `name` was loaded (dense or packed).
    public func contains(_ name: String) -> Bool {
        tensors[name] != nil || packed[name] != nil || preparedLock.withLock { prepared[name] != nil }
    }

    /// Whether `name` is a 4-bit packed weight.
    public func isPacked(_ name: String) -> Bool { packed[name] != nil }

    /// Names of all loaded tensors, dense and packed.
    public var names: [String] {
        (Array(tensors.keys) + Array(packed.keys) + preparedLock.withLock { Array(prepared.keys) }).sorted()
    }

    /// Names of the 4-bit packed weights.
    public var packedNames: [String] { packed.keys.sorted() }

    /// Bytes the loaded weights hold on the backend (dense tensors at their dtype, packed weights as codes plus
    /// per-block statistics).
    public var byteCount: Int {
        tensors.values.reduce(0) { $0 + $1.byteCount } + packed.values.reduce(0) { $0 + LinearWeight.packed($1).byteCount }
            + preparedLock.withLock { prepared.values.reduce(0) { $0 + $1.byteCount } }
    }

    /// Replaces a tensor (training updates, tests); a packed weight of that name is dropped.
    public func set(_ name: String, _ t: Tensor) {
        tensors[name] = t
        packed[name] = nil
        preparedLock.withLock { prepared[name] = nil }
    }
}

extension WeightStore {
    /// Names of loaded tensors (among `names`, default all) holding NaN or ±Inf, sorted. A packed weight is
    /// checked through its per-block scales and zeros (its codes index a finite table).
    public func nonFiniteTensors(_ names: [String]? = nil) throws -> [String] {
        try (names ?? self.names).filter { n in
            if let w = packed[n] {
                return try ([w.scale, w.codebook] + (w.zero.map { [$0] } ?? [])).contains {
                    try backend.floats($0).contains { !$0.isFinite }
                }
            }
            guard contains(n) else { return false }
            guard let t = try? self(n) else { return false }   // prepared for inference: no dense tensor left to check
            return try backend.floats(t).contains { !$0.isFinite }
        }.sorted()
    }

    /// Throws naming the first tensor among `names` (default all) that holds NaN or ±Inf (training refuses them).
    public func requireFinite(_ names: [String]? = nil) throws {
        if let bad = try nonFiniteTensors(names).first {
            throw ModelError(source: source, subject: bad, message: "the weights contain NaN or Inf",
                             fix: "use a checkpoint without NaN/Inf values (`hprune inspect` lists them)")
        }
    }
}

// Loading a diffusers checkpoint's tensors onto a backend, in the compute dtype the user asked for.
// Linear (and patch-embedding) weights take the compute dtype; biases, norm scales and the SD3 position
// table stay f32 (the backend's matmul wants an f32 bias). Removed components' tensors are never read.

import Checkpoint
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

/// An error while building or running a model; names the tensor or input concerned and how to fix it.
public struct ModelError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where the input came from (a file, or `<inputs>`).
    public var source: String
    /// The tensor or argument concerned.
    public var subject: String?
    public var message: String
    public var fix: String

    public init(source: String, subject: String? = nil, message: String, fix: String) {
        self.source = source
        self.subject = subject
        self.message = message
        self.fix = fix
    }

    public var description: String {
        "\(source)\(subject.map { ": '\($0)'" } ?? ""): error: \(message). fix: \(fix)"
    }
}

/// The tensors of one model on one backend, by state_dict name.
public final class WeightStore: @unchecked Sendable {
    public let backend: any Backend
    public let compute: ComputeDType
    /// Folder the weights came from (for messages).
    public let source: String
    private var tensors: [String: Tensor]

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
    }

    /// Tensors given directly (tests, and models built in memory).
    public init(tensors: [String: Tensor], backend: any Backend, compute: ComputeDType, source: String = "<memory>") {
        self.backend = backend
        self.compute = compute
        self.source = source
        self.tensors = tensors
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
            throw CheckpointError(.dtypeMismatch, file: file.path, tensor: name, offset: info.fileOffset,
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

    /// The tensor named `name`; throws naming it when it was not loaded.
    public func callAsFunction(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else {
            throw ModelError(source: source, subject: name, message: "tensor not loaded (missing, or its component is removed)",
                             fix: "check config.json and the removal list")
        }
        return t
    }

    /// Whether `name` was loaded.
    public func contains(_ name: String) -> Bool { tensors[name] != nil }

    /// Names of all loaded tensors.
    public var names: [String] { tensors.keys.sorted() }

    /// Replaces a tensor (training updates, tests).
    public func set(_ name: String, _ t: Tensor) { tensors[name] = t }

    /// A Linear layer `prefix.weight` (N,K) and optional `prefix.bias` (N).
    public func linear(_ prefix: String) throws -> Linear {
        Linear(weight: try self(prefix + ".weight"), bias: tensors[prefix + ".bias"])
    }
}

/// torch.nn.Linear: y = x·Wᵀ + b with W (N,K), b (N) f32.
public struct Linear: @unchecked Sendable {
    public var weight: Tensor
    public var bias: Tensor?

    public init(weight: Tensor, bias: Tensor?) {
        self.weight = weight
        self.bias = bias
    }

    /// x (…,K) → (…,N) f32; x is cast to the weight's dtype first.
    public func callAsFunction(_ be: any Backend, _ x: Tensor, activation: Activation = .none) throws -> Tensor {
        let xin = x.dtype == weight.dtype ? x : try be.cast(x, to: weight.dtype)
        return try be.linear(xin, weight: weight, bias: bias, activation: activation)
    }
}

extension WeightStore {
    /// Names of loaded tensors (among `names`, default all) holding NaN or ±Inf, sorted.
    public func nonFiniteTensors(_ names: [String]? = nil) throws -> [String] {
        try (names ?? self.names).filter { n in
            guard let t = tensors(n) else { return false }
            return try backend.floats(t).contains { !$0.isFinite }
        }.sorted()
    }

    private func tensors(_ name: String) -> Tensor? { contains(name) ? try? self(name) : nil }

    /// Throws naming the first tensor among `names` (default all) that holds NaN or ±Inf (training refuses them).
    public func requireFinite(_ names: [String]? = nil) throws {
        if let bad = try nonFiniteTensors(names).first {
            throw ModelError(source: source, subject: bad, message: "the weights contain NaN or Inf",
                             fix: "use a checkpoint without NaN/Inf values (`hprune inspect` lists them)")
        }
    }
}

// Turns a `Model` artifact (a manifest in the store) into a runnable `DiffusionTransformer` on a backend:
// honours the manifest's removal, exposes its frozen set, memory-maps float tensors straight from store objects,
// and holds 4-bit weights packed for the W4A16 kernel (int8 is dequantised at load; `ModelLoading.quantisedWeightsNote`).

import ArtifactStore
import TensorFiles
import Compression
import CPUBackend
import Foundation
import ModelSpec
import ModelStore
import Models
import Scheduler
import StageGraph
import TensorCore

/// A `Model` input opened on a backend: the manifest view (`LoadedModel`), the transformer, and its frozen set.
struct RunnableModel: @unchecked Sendable {
    var loaded: LoadedModel
    var transformer: any DiffusionTransformer
    /// Frozen blocks and prefixes recorded by `freeze` (empty when nothing is frozen).
    var frozen: FreezeDecision

    var digest: Digest { loaded.digest }
    var manifest: ModelManifest { loaded.manifest }
    var structure: ModelStructure { loaded.structure }
    var backend: any Backend { transformer.backend }

    /// Whether the tensor `name` is frozen (PWP): training must not update it.
    func isFrozen(_ name: String) -> Bool { frozen.isFrozen(name, structure: structure) }

    /// Names of the loaded tensors training may update: not frozen, not buffers (e.g. `pos_embed.pos_embed`).
    var trainableTensorNames: [String] {
        let buffers = Set(structure.tensors.filter(\.isBuffer).map(\.name))
        return transformer.weights.names.filter { !buffers.contains($0) && !isFrozen($0) }
    }
}

/// How `ModelLoading.transformer` holds 4-bit quantised weights.
enum QuantisedLoading: Sendable, Hashable {
    /// As `Packed4BitWeight`s run by `Backend.matmulW4A16` (the default; the dense weight never exists).
    case packed
    /// Dequantised once at load to dense compute-dtype tensors (the reference path, for parity tests).
    case dequantised
}

enum ModelLoading {
    /// How quantised weights run (doc text, repeated in Docs/method.md).
    static let quantisedWeightsNote = """
        4-bit weights (nf4, fp4, int4) stay packed: each Linear holds its 4-bit codes, one f32 scale per block \
        (a double-quantised absmax is decoded to f32 once at load — per-block statistics, not the weight), an \
        f32 zero per block for asymmetric int4, and the 16-entry code table, and runs through \
        `Backend.matmulW4A16`, which dequantises inside the kernel (W4A16; the full-precision weight is never \
        materialised). The values are those of bitsandbytes' `dequantize_4bit` (nf4/fp4, bit-exact) and of \
        hprune's int4 decode (asymmetric int4 as code·s − z·s, within 2 ulp of (code − z)·s). The weight is \
        used in f32 inside the kernel; in bf16 compute the activations are cast to bf16. int8 weights are \
        dequantised once at load to the compute dtype (the backends have no int8 matmul). `evaluate` reports \
        the stored (quantised) weight bytes from the manifest separately from the runtime peak.
        """

    /// Builds the transformer for `manifest` on `backend`.
    ///
    /// - `removing`: further addresses to remove for the whole life of this instance (on top of the manifest's).
    /// - Float tensors stored in the wanted dtype are memory-mapped from their store objects on host backends (no
    ///   copy; the object's size is checked, its hash is not re-computed — `hprune cache verify` does that);
    ///   other float tensors are decoded and converted; 4-bit weights are held packed (`quantised: .packed`) or
    ///   dequantised (`.dequantised`, the reference path); int8 weights are dequantised (`quantisedWeightsNote`).
    /// - Throws: `ModelStoreError` / `ModelError` naming the tensor for a manifest that does not match its config.
    static func transformer(_ m: LoadedModel, store: ArtifactStore, backend: any Backend, compute: ComputeDType = .f32,
                            removing extra: Removal = Removal(),
                            quantised: QuantisedLoading = .packed) throws -> any DiffusionTransformer {
        var removal = m.removal
        for a in extra.addresses { try removal.insert(a, in: m.structure) }
        let specs = try m.structure.requiredTensors(after: removal)
        var tensors: [String: Tensor] = [:]
        var packed: [String: Packed4BitWeight] = [:]
        for spec in specs {
            guard let t = m.manifest.tensors[spec.name] else {
                throw ModelStoreError("model \(m.digest.short): tensor '\(spec.name)' is missing from the manifest",
                                      fix: "the manifest does not match its config; re-run the stage that produced it")
            }
            if quantised == .packed, let q = t.quantisation, q.format.traits.runsPacked {
                packed[spec.name] = try packedWeight(spec, t, q, store: store, backend: backend)
                continue
            }
            let want: DType = (spec.shape.count >= 2 && !spec.isBuffer) ? compute.dtype : .f32
            tensors[spec.name] = try loadTensor(spec, t, as: want, store: store, backend: backend)
        }
        let weights = WeightStore(tensors: tensors, packed: packed, backend: backend, compute: compute,
                                  source: "model \(m.digest.short)")
        switch m.structure.config {
        case .sd3(let c): return SD3Transformer(config: c, structure: m.structure, removal: removal, weights: weights)
        case .flux(let c): return FluxTransformer(config: c, structure: m.structure, removal: removal, weights: weights)
        }
    }

    /// One tensor of the manifest as `dtype` on `backend`.
    static func loadTensor(_ spec: TensorSpec, _ t: ManifestTensor, as dtype: DType, store: ArtifactStore,
                           backend: any Backend) throws -> Tensor {
        let name = spec.name
        if let q = t.quantisation {
            guard q.originalShape == spec.shape else {
                throw ModelStoreError("tensor '\(name)': quantised shape \(q.originalShape) does not match the config's \(spec.shape)",
                                      fix: "re-run the quantise stage")
            }
            let w = try dequantise(name, t, store: store)
            return try backend.tensor(w, shape: spec.shape, dtype: dtype)
        }
        let o = t.object
        guard o.shape == spec.shape else {
            throw ModelStoreError("tensor '\(name)': shape \(o.shape) does not match the config's \(spec.shape)",
                                  fix: "the manifest does not match its config; re-run the stage that produced it")
        }
        let stored: DType? = switch o.dtype {
        case .f32: .f32
        case .bf16: .bf16
        case .f16: .f16
        default: nil
        }
        guard let stored else {
            throw ModelStoreError("tensor '\(name)': dtype \(o.dtype.rawValue) cannot be used as a weight", fix: "store it as F32, BF16 or F16")
        }
        if stored == dtype, backend.device == .host {
            let path = store.path(of: o.digest).path
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue
            guard size == o.bytes, o.bytes == dtype.byteCount(for: spec.shape.reduce(1, *)) else {
                throw ModelStoreError("tensor '\(name)': object \(o.digest.short) is missing or has the wrong size",
                                      fix: "run `hprune cache verify`, then re-run the stage that produced the model")
            }
            return try Tensor.mapped(path: path, offset: 0, shape: spec.shape, dtype: dtype)
        }
        let data = try ModelStore.data(o, store: store, name: name)
        if stored == dtype { return try backend.tensor(bytes: [UInt8](data), shape: spec.shape, dtype: dtype) }
        guard let f = data.withUnsafeBytes({ FloatDecoding.decode($0, dtype: o.dtype) }) else {
            throw ModelStoreError("tensor '\(name)': cannot decode \(o.dtype.rawValue)", fix: "use f32, bf16 or f16 weights")
        }
        return try backend.tensor(f, shape: spec.shape, dtype: dtype)
    }

    /// A 4-bit quantised Linear weight (nf4, fp4, int4, int4-asym) as a `Packed4BitWeight` (N,K) on `backend`:
    /// its format's traits prepare the codes, per-block scales (and zeros) and code table (`QuantTraits.prepare`);
    /// only the codes and per-block statistics are read.
    static func packedWeight(_ spec: TensorSpec, _ t: ManifestTensor, _ q: TensorQuantisation, store: ArtifactStore,
                             backend: any Backend) throws -> Packed4BitWeight {
        let name = spec.name
        guard q.originalShape == spec.shape else {
            throw ModelStoreError("tensor '\(name)': quantised shape \(q.originalShape) does not match the config's \(spec.shape)",
                                  fix: "re-run the quantise stage")
        }
        guard spec.shape.count == 2 else {
            throw ModelStoreError("tensor '\(name)': a 4-bit weight must be a 2-D Linear weight, the config says \(spec.shape)",
                                  fix: "keep this tensor out of quantisation (`keep:` in the quantise stage)")
        }
        let prepared = try decoding { try ModelStore.storedQuantWeight(name, t, store: store).prepared4Bit() }
        return try Packed4BitWeight(prepared, shape: spec.shape, backend: backend)
    }

    /// The fp32 values [n] of a quantised weight, decoded by its format's traits (`QuantTraits.dequantise`).
    static func dequantise(_ name: String, _ t: ManifestTensor, store: ArtifactStore) throws -> [Float] {
        try decoding { try ModelStore.storedQuantWeight(name, t, store: store).dequantised() }
    }

    /// Runs a quantised-weight decode, phrasing a layout problem (`QuantError`, which names the tensor) with its fix.
    private static func decoding<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as QuantError {
            throw ModelStoreError("\(e)", fix: "re-run the quantise stage")
        }
    }
}

extension StageContext {
    /// The backend this run computes on (`ctx.backend`: `cpu`, `reference`, `auto`, …).
    func makeBackend() throws -> any Backend {
        do { return try BackendRegistry.all.make(backend) } catch { throw failure("\(error)") }
    }

    /// Opens the `Model` bound at `path` on `backend` (importing a source folder on first use), honouring the
    /// manifest's removal (plus `removing`), frozen set and quantisation. Failures name the stage and recipe location.
    ///
    ///     let be = try ctx.makeBackend()
    ///     let student = try ctx.openModel("student", backend: be)
    ///     let v = try student.transformer.forward(inputs)
    func openModel(_ path: String, backend: any Backend, compute: ComputeDType = .f32,
                   removing extra: Removal = Removal()) throws -> RunnableModel {
        let m = try loadModel(path)
        let t: any DiffusionTransformer
        do {
            t = try ModelLoading.transformer(m, store: store, backend: backend, compute: compute, removing: extra)
        } catch let e as CancellationError {
            throw e
        } catch {
            throw failure("cannot load the model '\(path)' (\(m.digest.short)): \(error)")
        }
        let frozen = FreezeDecision(blocks: m.manifest.structure.frozenBlocks, prefixes: m.manifest.structure.frozenPrefixes)
        return RunnableModel(loaded: m, transformer: t, frozen: frozen)
    }
}

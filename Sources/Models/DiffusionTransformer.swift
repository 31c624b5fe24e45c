// The common face of the two transformer families: inputs named like diffusers' forward arguments, a forward
// pass under a removal set, and loading from a diffusers folder (dispatching on config.json's `_class_name`).

import TensorFiles
import ModelSpec
import TensorCore

/// Forward arguments, named and scaled as diffusers' `forward`.
///
/// SD3: `hiddenStates` (B,C,H,W) latents, `timestep` = σ·1000. FLUX: `hiddenStates` (B,Li,C) packed latents,
/// `timestep` = σ and `guidance` (both multiplied by 1000 inside the model), `imgIds` (Li,3), `txtIds` (Lt,3).
public struct TransformerInputs: @unchecked Sendable {
    public var hiddenStates: Tensor
    /// (B,Lt,J) text-encoder states.
    public var encoderHiddenStates: Tensor
    /// (B,P) pooled text embedding.
    public var pooledProjections: Tensor
    /// (B) per-sample timesteps.
    public var timestep: [Float]
    /// (B) FLUX guidance scale (models with `guidance_embeds`).
    public var guidance: [Float]?
    /// (Li·3) FLUX image position ids, row-major (0, row, col).
    public var imgIds: [Float]?
    /// (Lt·3) FLUX text position ids (zeros).
    public var txtIds: [Float]?

    public init(hiddenStates: Tensor, encoderHiddenStates: Tensor, pooledProjections: Tensor, timestep: [Float],
                guidance: [Float]? = nil, imgIds: [Float]? = nil, txtIds: [Float]? = nil) {
        self.hiddenStates = hiddenStates
        self.encoderHiddenStates = encoderHiddenStates
        self.pooledProjections = pooledProjections
        self.timestep = timestep
        self.guidance = guidance
        self.imgIds = imgIds
        self.txtIds = txtIds
    }
}

/// A diffusion transformer on a backend: SD3/SD3.5 (`SD3Transformer`) or FLUX (`FluxTransformer`).
public protocol DiffusionTransformer: AnyObject, Sendable {
    var backend: any Backend { get }
    var structure: ModelStructure { get }
    /// Components removed at load time (the checkpoint's recorded removal plus the caller's); their tensors
    /// were never loaded.
    var removal: Removal { get }
    var weights: WeightStore { get }

    /// The velocity prediction, shaped like `inputs.hiddenStates`. `extra` removes further components for
    /// this call only (scoring); components removed at load time stay removed.
    func forward(_ inputs: TransformerInputs, removing extra: Removal) throws -> Tensor

    /// The `timestep` value the model takes at noise level σ (SD3: σ·1000, FLUX: σ).
    func timestep(sigma: Float) -> Float
}

extension DiffusionTransformer {
    /// Forward pass with the load-time removal only.
    public func forward(_ inputs: TransformerInputs) throws -> Tensor { try forward(inputs, removing: Removal()) }

    public var config: ModelConfig { structure.config }

    /// Load-time removal ∪ `extra`.
    func effectiveRemoval(_ extra: Removal) throws -> Removal {
        var r = removal
        for a in extra.addresses { try r.insert(a, in: structure) }
        return r
    }
}

/// Opens the diffusers folder at `path` and builds the matching transformer.
///
/// `removing` adds to the removal recorded in config.json (`hprune_removed`); tensors of removed components are
/// not read. Throws `ModelSpecError` / `TensorFileError` naming the file and tensor for bad input.
public func loadTransformer(path: String, backend: any Backend, compute: ComputeDType = .f32,
                            removing extra: [String] = []) throws -> any DiffusionTransformer {
    let ckpt = try ModelCheckpoint(path: path)
    var removal = ckpt.removal
    for s in extra { try removal.insert(try ComponentAddress(parsing: s), in: ckpt.structure) }
    return try loadTransformer(ckpt, backend: backend, compute: compute, removal: removal)
}

/// Builds the transformer for an opened checkpoint with the given (complete) removal.
public func loadTransformer(_ ckpt: ModelCheckpoint, backend: any Backend, compute: ComputeDType,
                            removal: Removal) throws -> any DiffusionTransformer {
    let specs = try ckpt.structure.requiredTensors(after: removal)
    let weights = try WeightStore(folder: ckpt.folder, specs: specs, backend: backend, compute: compute)
    switch ckpt.config {
    case .sd3(let c): return SD3Transformer(config: c, structure: ckpt.structure, removal: removal, weights: weights)
    case .flux(let c): return FluxTransformer(config: c, structure: ckpt.structure, removal: removal, weights: weights)
    }
}

/// Input checks shared by both families; errors name the argument (`source` is `<inputs>` or the file).
struct InputCheck {
    var source = "<inputs>"

    func fail(_ name: String, _ message: String, _ fix: String) -> ModelError {
        ModelError(source: source, subject: name, message: message, fix: fix)
    }

    func shape(_ name: String, _ t: Tensor, _ want: [Int?]) throws {
        let ok = t.rank == want.count && zip(t.shape, want).allSatisfy { $1 == nil || $0 == $1! }
        guard ok else {
            let w = "(" + want.map { $0.map(String.init) ?? "*" }.joined(separator: ",") + ")"
            throw fail(name, "shape \(t.shape.shapeString), expected \(w)", "pass a tensor of shape \(w) (diffusers' layout)")
        }
        guard t.dtype.isFloatingPoint else {
            throw fail(name, "dtype \(t.dtype) is not floating point", "store it as F32, BF16 or F16")
        }
    }

    func count(_ name: String, _ v: [Float]?, _ n: Int) throws -> [Float] {
        guard let v else { throw fail(name, "missing", "provide '\(name)' with \(n) values") }
        guard v.count == n else { throw fail(name, "\(v.count) values, expected \(n)", "provide '\(name)' with \(n) values") }
        guard v.allSatisfy(\.isFinite) else { throw fail(name, "contains NaN or Inf", "pass finite values") }
        return v
    }
}

/// f32 copy of `t` on `be` (inputs may arrive as bf16/f16).
func asF32(_ be: any Backend, _ t: Tensor) throws -> Tensor {
    let x = try be.transfer(t)
    return x.dtype == .f32 ? x : try be.cast(x, to: .f32)
}

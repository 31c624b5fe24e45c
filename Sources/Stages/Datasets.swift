// The calibration / training `Dataset` artifact: one safetensors file of prompt embeddings (optionally target
// latents and class labels), opened for a stage, sliced into batches, with fixed per-sample noise from the seed.
//
// Layout (N samples; SD3 latents (C,H,W), FLUX latents packed as diffusers does, (Li,C) with Li = h·w):
//   encoder_hidden_states  [N, L, J]   float  (J = the model's joint_attention_dim)
//   pooled_projections     [N, P]      float  (P = pooled_projection_dim)
//   latents                [N, C, H, W] (SD3) or [N, Li, C] (FLUX)   optional: training targets, in latent space
//   labels                 [N]         int    optional: class ids for class-conditional data (task metrics)
//   negative_encoder_hidden_states [1 or N, L, J], negative_pooled_projections [1 or N, P]   optional: the
//                          unconditional (empty / negative prompt) embedding of classifier-free guidance; one row
//                          is shared by every sample
//   __metadata__: latent_height, latent_width (optional; SD3: latent pixels, FLUX: token grid h, w)

import ArtifactStore
import TensorFiles
import Foundation
import ModelSpec
import Models
import Scheduler
import TensorCore

/// A dataset file opened for reading (tensors memory-mapped when stored as f32).
struct PromptDataset: @unchecked Sendable {
    /// For messages: the file (source path or store object) it came from.
    let source: String
    /// N (after `limit`).
    let count: Int
    /// [N, L, J] f32 (host).
    let encoderHiddenStates: Tensor
    /// [N, P] f32 (host).
    let pooledProjections: Tensor
    /// [N, …] f32 (host), when present.
    let latents: Tensor?
    /// [N] class ids, when present.
    let labels: [Int]?
    /// Negative (unconditional) embeddings [1 or N, L, J] and [1 or N, P], when present (CFG).
    let negative: (encoderHiddenStates: Tensor, pooledProjections: Tensor)?
    /// Latent size from the metadata, or from `latents`' shape (SD3: H, W; FLUX: token grid h, w).
    let latentSize: (height: Int, width: Int)?
    /// The prompts / captions (metadata `prompts`, one per line, as Examples/embed_prompts.py writes), first N.
    var prompts: [String]? = nil

    static let keys = ["encoder_hidden_states", "pooled_projections", "latents", "labels",
                       "negative_encoder_hidden_states", "negative_pooled_projections"]

    /// Opens the safetensors file at `path`, keeping the first `limit` samples (all when nil).
    /// - Throws: `StageFailure`-ready text naming the file and tensor for missing keys or inconsistent shapes.
    static func open(path: String, source: String, limit: Int? = nil) throws -> PromptDataset {
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: path) } catch {
            throw DatasetError(source, "cannot read as safetensors: \(error)", fix: "write the dataset with safetensors (see Docs/method.md, 'Datasets')")
        }
        func need(_ k: String) throws -> TensorInfo {
            guard let i = try? file.info(k) else {
                throw DatasetError(source, "no tensor '\(k)' (has: \(file.names.sorted().joined(separator: ", ")))",
                                   fix: "store '\(k)' in the dataset file")
            }
            return i
        }
        let ehs = try need("encoder_hidden_states"), pooled = try need("pooled_projections")
        guard ehs.shape.count == 3, ehs.shape[0] > 0 else {
            throw DatasetError(source, "'encoder_hidden_states' has shape \(ehs.shape), expected [N, L, J] with N ≥ 1", fix: "store one row per prompt")
        }
        let n = ehs.shape[0]
        guard pooled.shape.count == 2, pooled.shape[0] == n else {
            throw DatasetError(source, "'pooled_projections' has shape \(pooled.shape), expected [\(n), P]", fix: "store one pooled embedding per prompt")
        }
        let kept = min(n, limit ?? n)
        func floats(_ i: TensorInfo) throws -> Tensor {
            guard i.dtype.isFloatingPoint else {
                throw DatasetError(source, "'\(i.name)' has dtype \(i.dtype.rawValue), expected a float type", fix: "store it as F32, BF16 or F16")
            }
            let t: Tensor
            if i.dtype == .f32, i.fileOffset % 4 == 0 {
                t = try Tensor.mapped(path: path, offset: i.fileOffset, shape: i.shape, dtype: .f32)
            } else {
                let f = try file.floats(i.name)
                t = try ReferenceBackend().tensor(f, shape: i.shape, dtype: .f32)
            }
            return t.rows(0..<kept)
        }
        var latents: Tensor?
        if file.contains("latents") {
            let li = try file.info("latents")
            guard (li.shape.count == 4 || li.shape.count == 3), li.shape[0] == n else {
                throw DatasetError(source, "'latents' has shape \(li.shape), expected [\(n), C, H, W] (SD3) or [\(n), Li, C] (FLUX)",
                                   fix: "store one latent per prompt")
            }
            latents = try floats(li)
        }
        var labels: [Int]?
        if file.contains("labels") {
            let li = try file.info("labels")
            guard li.shape == [n] else {
                throw DatasetError(source, "'labels' has shape \(li.shape), expected [\(n)]", fix: "store one class id per prompt")
            }
            let d = try file.bytes("labels")
            let all: [Int]? = d.withUnsafeBytes { p -> [Int]? in
                switch li.dtype {
                case .i64: return (0..<n).map { Int(Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
                case .i32: return (0..<n).map { Int(Int32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
                default: return nil
                }
            }
            guard let all else {
                throw DatasetError(source, "'labels' has dtype \(li.dtype.rawValue), expected I64 or I32", fix: "store class ids as integers")
            }
            labels = Array(all.prefix(kept))
        }
        var negative: (Tensor, Tensor)?
        let hasNE = file.contains("negative_encoder_hidden_states"), hasNP = file.contains("negative_pooled_projections")
        if hasNE || hasNP {
            guard hasNE, hasNP else {
                throw DatasetError(source, "has '\(hasNE ? "negative_encoder_hidden_states" : "negative_pooled_projections")' but not '\(hasNE ? "negative_pooled_projections" : "negative_encoder_hidden_states")'",
                                   fix: "store both negative (empty-prompt) embeddings, as Examples/embed_prompts.py does")
            }
            let ne = try file.info("negative_encoder_hidden_states"), np = try file.info("negative_pooled_projections")
            let rows = ne.shape.first ?? 0
            guard ne.shape.count == 3, rows == 1 || rows == n, Array(ne.shape.dropFirst()) == Array(ehs.shape.dropFirst()) else {
                throw DatasetError(source, "'negative_encoder_hidden_states' has shape \(ne.shape), expected [1, \(ehs.shape[1]), \(ehs.shape[2])] or [\(n), \(ehs.shape[1]), \(ehs.shape[2])] (the shape of a prompt's embedding)",
                                   fix: "encode the negative prompt with the same text encoders and sequence length as the prompts")
            }
            guard np.shape == [rows, pooled.shape[1]] else {
                throw DatasetError(source, "'negative_pooled_projections' has shape \(np.shape), expected [\(rows), \(pooled.shape[1])]",
                                   fix: "store one pooled negative embedding per negative_encoder_hidden_states row")
            }
            func all(_ i: TensorInfo) throws -> Tensor {
                guard i.dtype.isFloatingPoint else {
                    throw DatasetError(source, "'\(i.name)' has dtype \(i.dtype.rawValue), expected a float type", fix: "store it as F32, BF16 or F16")
                }
                let t = try ReferenceBackend().tensor(try file.floats(i.name), shape: i.shape, dtype: .f32)
                return rows == 1 ? t : t.rows(0..<kept)
            }
            negative = (try all(ne), try all(np))
        }
        var size: (Int, Int)?
        if let h = file.metadata["latent_height"].flatMap(Int.init), let w = file.metadata["latent_width"].flatMap(Int.init), h > 0, w > 0 {
            size = (h, w)
        } else if let l = latents, l.rank == 4 {
            size = (l.shape[2], l.shape[3])
        }
        var d = PromptDataset(source: source, count: kept, encoderHiddenStates: try floats(ehs), pooledProjections: try floats(pooled),
                              latents: latents, labels: labels, negative: negative.map { (encoderHiddenStates: $0.0, pooledProjections: $0.1) },
                              latentSize: size)
        if let text = file.metadata["prompts"] {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.count == n { d.prompts = Array(lines.prefix(kept)) }
        }
        return d
    }

    /// Checks the embedding widths (and latents) against a model's config.
    func check(against config: ModelConfig) throws {
        let j: Int, p: Int
        switch config {
        case .sd3(let c): (j, p) = (c.jointAttentionDim, c.pooledProjectionDim)
        case .flux(let c): (j, p) = (c.jointAttentionDim, c.pooledProjectionDim)
        }
        guard encoderHiddenStates.shape[2] == j else {
            throw DatasetError(source, "'encoder_hidden_states' width \(encoderHiddenStates.shape[2]) ≠ the model's joint_attention_dim \(j)",
                               fix: "embed the prompts with the text encoders this model was trained with")
        }
        guard pooledProjections.shape[1] == p else {
            throw DatasetError(source, "'pooled_projections' width \(pooledProjections.shape[1]) ≠ the model's pooled_projection_dim \(p)",
                               fix: "embed the prompts with the text encoders this model was trained with")
        }
        if let l = latents {
            let want = try latentShape(for: config, batch: count)
            guard l.shape == want else {
                throw DatasetError(source, "'latents' has shape \(l.shape), the model takes \(want)", fix: "encode the targets for this model's latent space")
            }
        }
    }

    /// The latent tensor shape for `batch` samples: SD3 [B, C, H, W]; FLUX [B, h·w, C].
    /// Size: `override`, else the dataset's, else the model's default (SD3 `sample_size`, FLUX 16×16 tokens).
    func latentShape(for config: ModelConfig, batch: Int, override: (height: Int, width: Int)? = nil) throws -> [Int] {
        switch config {
        case .sd3(let c):
            let (h, w) = override ?? latentSize ?? (c.sampleSize, c.sampleSize)
            guard h % c.patchSize == 0, w % c.patchSize == 0 else {
                throw DatasetError(source, "latent size \(h)×\(w) is not a multiple of the patch size \(c.patchSize)", fix: "use an even latent size")
            }
            return [batch, c.inChannels, h, w]
        case .flux(let c):
            let (h, w) = fluxGrid(override: override)
            return [batch, h * w, c.inChannels]
        }
    }

    /// The FLUX token grid (h, w) of the samples: `override`, else the dataset's, else 16×16.
    func fluxGrid(override: (height: Int, width: Int)?) -> (height: Int, width: Int) {
        if let g = override ?? latentSize { return g }
        return (16, 16)
    }

    /// FLUX image ids for the latent grid (nil for SD3).
    func imageIds(for config: ModelConfig, override: (height: Int, width: Int)? = nil) -> [Float]? {
        guard case .flux = config else { return nil }
        let (h, w) = fluxGrid(override: override)
        return fluxImageIds(height: h, width: w)
    }

    /// Batches of at most `size` consecutive samples covering 0..<count.
    func batches(size: Int) -> [Range<Int>] {
        let s = max(1, size)
        return stride(from: 0, to: count, by: s).map { $0..<min(count, $0 + s) }
    }

    /// The conditioning of samples `range` on `backend` (FLUX: `guidance` per sample when given).
    func conditioning(_ range: Range<Int>, backend: any Backend, guidance: Float? = nil) throws -> Conditioning {
        Conditioning(encoderHiddenStates: try backend.transfer(encoderHiddenStates.rows(range)),
                     pooledProjections: try backend.transfer(pooledProjections.rows(range)),
                     guidance: guidance.map { Array(repeating: $0, count: range.count) })
    }

    /// The unconditional (negative-prompt) conditioning of samples `range` for classifier-free guidance, nil when
    /// the dataset has none. A single stored row is repeated for every sample.
    func negativeConditioning(_ range: Range<Int>, backend: any Backend) throws -> Conditioning? {
        guard let negative else { return nil }
        func rows(_ t: Tensor) throws -> Tensor {
            if t.shape[0] != 1 { return try backend.transfer(t.rows(range)) }
            let one = try backend.transfer(t)
            return range.count == 1 ? one : try backend.concat(Array(repeating: one, count: range.count), axis: 0)
        }
        return Conditioning(encoderHiddenStates: try rows(negative.encoderHiddenStates), pooledProjections: try rows(negative.pooledProjections))
    }

    /// Target latents of samples `range` on `backend`; throws when the dataset has none.
    func latents(_ range: Range<Int>, backend: any Backend) throws -> Tensor {
        guard let latents else {
            throw DatasetError(source, "no tensor 'latents' (training targets)", fix: "store 'latents' [N, C, H, W] in the dataset file")
        }
        return try backend.transfer(latents.rows(range))
    }

    /// Fixed per-sample noise for samples `range`, shaped `latentShape` with batch = range.count.
    ///
    /// Sample s gets Philox elements [s·n, (s+1)·n) of the stream `seed` (n = elements per sample), so a sample's
    /// noise depends only on (seed, s) — not on the batch size or which other samples share its batch.
    static func noise(_ range: Range<Int>, sampleShape: [Int], seed: UInt64, backend: any Backend) throws -> Tensor {
        let n = sampleShape.reduce(1, *)
        let parts = try range.map { s in try backend.randomNormal([1] + sampleShape, seed: seed, offset: UInt64(s * n)) }
        return parts.count == 1 ? parts[0] : try backend.concat(parts, axis: 0)
    }
}

/// A problem with a dataset file; `StageContext.openDataset` phrases it with the stage and recipe location.
struct DatasetError: Error, CustomStringConvertible {
    var source: String
    var message: String
    var fix: String
    init(_ source: String, _ message: String, fix: String) {
        self.source = source
        self.message = message
        self.fix = fix
    }
    var description: String { "dataset \(source): \(message); \(fix)" }
}

extension StageContext {
    /// Opens the `Dataset` bound at `path` (a `datasets:` source file, or a dataset object in the store),
    /// keeping the first `limit` samples.
    func openDataset(_ path: String, limit: Int? = nil) throws -> PromptDataset {
        guard let ref = input(path) else { throw failure("input '\(path)' is not bound") }
        let file = ref.sourcePath?.path ?? store.path(of: ref.digest).path
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: file, isDirectory: &isDir), isDir.boolValue {
            throw failure("the dataset '\(path)' (\(file)) is a directory; expected one safetensors file",
                          log: "fix: point the dataset's `path` at the .safetensors file")
        }
        do {
            return try PromptDataset.open(path: file, source: ref.sourcePath?.lastPathComponent ?? "object \(ref.digest.short)", limit: limit)
        } catch let e as DatasetError {
            throw failure("\(e)")
        } catch {
            throw failure("cannot read the dataset '\(path)': \(PlainError.describe(error))")
        }
    }

    /// The recipe seed as the Philox stream key.
    var noiseSeed: UInt64 { UInt64(bitPattern: Int64(seed)) }
}

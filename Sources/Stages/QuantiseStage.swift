// The `quantise` stage kind: weight-only quantisation of every Linear weight (except `keep` patterns) to
// nf4 / fp4 (bit-identical to bitsandbytes, its key layout), int4 (group-wise) or int8 (per row). Other tensors
// keep their objects; each quantised weight becomes new objects (codes + companions).

import ArtifactStore
import TensorFiles
import Compression
import Foundation
import ModelSpec
import ModelStore
import Scheduler
import StageGraph
import TensorCore
import YAMLSupport

public struct QuantiseStage: TypedStageKind {
    public init() {}
    public let name = "quantise"
    public let version = 2   // 2: double_quant defaults to true for nf4/fp4 (the official Linear4bit)
    public let summary = "Quantise Linear weights (W4A16 nf4/fp4 bit-exact with bitsandbytes, int4, int8)."
    public var usesBackend: Bool { false }

    public let schema = Schema([
        Field("model", .reference(.model), required: true, doc: "The model to quantise (not already quantised)."),
        Field("format", .choice(of: Format.self), default: .string(Format.nf4.rawValue),
              doc: "`nf4` / `fp4`: bitsandbytes 4-bit (blockwise absmax), exported in bitsandbytes' key layout so diffusers loads it. `int4`: linear 4-bit per group (see `scheme`). `int8`: per-row absmax 8-bit."),
        Field("block_size", .integer(min: 1), default: .int(64),
              doc: "Elements per absmax block (nf4/fp4: one of 32, 64, 128, 256, 512, 1024, 2048, 4096) or per group (int4). Ignored by int8."),
        Field("double_quant", .bool,
              doc: "nf4/fp4: quantise the absmax vector to 8 bits (bitsandbytes `bnb_4bit_use_double_quant`). Default: true for nf4/fp4 — the official code's `Linear4bit` has `compress_statistics=True` (utils/quantize.py), which saves ~0.4 bit per weight (~0.3 GB at 8B parameters); not used by int4/int8."),
        Field("scheme", .choice(of: Int4Scheme.self), default: .string(Int4Scheme.symmetric.rawValue),
              doc: "int4 only: `symmetric` (scale = absmax/7) or `asymmetric` (scale and zero point per group)."),
        Field("keep", .list(.string), default: .list([]),
              doc: "Layer or tensor name patterns left unquantised, e.g. `[proj_out, \"norm_out.*\", \"transformer_blocks.0.*\"]`. A pattern without `*` matches the layer and everything under it; a pattern that matches nothing is an error. Default: every Linear weight (2-D `*.weight`) is quantised."),
        Field("compute_dtype", .choice(of: LoaderComputeDType.self), default: .string(LoaderComputeDType.bfloat16.rawValue),
              doc: "Activation dtype recorded for loaders (diffusers `bnb_4bit_compute_dtype`); the official code uses float16."),
    ])

    /// The recipe's `format`: a family; int4's `scheme` picks the stored `QuantFormat`.
    public enum Format: String, CaseIterable, Sendable, Decodable {
        case nf4, fp4, int4, int8
    }

    public struct Params: Decodable {
        var model: String
        var format: Format
        var blockSize: Int
        /// Default (nil): true for nf4/fp4 (the official `Linear4bit`), unused by int4/int8.
        var doubleQuant: Bool?
        var scheme: Int4Scheme
        var keep: [String]
        var computeDtype: LoaderComputeDType

        /// The stored format: `format`, with int4's `scheme`.
        var quantFormat: QuantFormat {
            switch (format, scheme) {
            case (.nf4, _): .nf4
            case (.fp4, _): .fp4
            case (.int4, .symmetric): .int4
            case (.int4, .asymmetric): .int4Asym
            case (.int8, _): .int8
            }
        }

        /// The quantiser's options these params mean.
        var options: QuantiseOptions {
            let f = quantFormat
            return QuantiseOptions(spec: QuantSpec(f, blockSize: blockSize), doubleQuant: doubleQuant ?? (f.bitsandbytesType != nil),
                                   keep: keep, computeDType: computeDtype.rawValue)
        }
    }

    public func outputs(params: ParamValue) -> [PortSpec] { [PortSpec("model", .model, doc: "the quantised model")] }
    public func defaultOutput(params: ParamValue) -> String { "model" }

    public func check(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        guard let p = try? decodeParams(params) else { return }
        let bitsandbytes = p.quantFormat.bitsandbytesType != nil
        if bitsandbytes, !bitsandbytesBlockSizes.contains(p.blockSize) {
            checker.error("'block_size' \(p.blockSize) is not one bitsandbytes accepts for \(p.format.rawValue)", node["block_size"]?.mark ?? node.mark,
                          hint: "use one of " + bitsandbytesBlockSizes.map(String.init).joined(separator: ", "))
        }
        if p.doubleQuant == true, !bitsandbytes {
            checker.error("'double_quant' applies to nf4/fp4 only", node["double_quant"]?.mark ?? node.mark)
        }
        if p.format != .int4, node["scheme"] != nil {
            checker.error("'scheme' applies to int4 only", node["scheme"]?.mark ?? node.mark)
        }
    }

    public func run(_ ctx: StageContext) async throws -> [String: Digest] {
        let options = try params(ctx).options
        let m = try ctx.loadModel("model")
        if m.manifest.isQuantised {
            let q = (m.manifest.quantisation?.format ?? m.manifest.tensors.values.compactMap(\.quantisation).first?.format).map(\.rawValue) ?? "?"
            throw ctx.failure("the input model is already quantised (\(q)); quantising twice would compound the error",
                              log: "fix: point `model:` at the unquantised model (the stage before the earlier quantise)")
        }
        let unmatched = LinearQuantiser.unmatchedKeepPatterns(options.keep, names: Array(m.manifest.tensors.keys))
        if !unmatched.isEmpty {
            throw ctx.failure("'keep' pattern\(unmatched.count == 1 ? "" : "s") " + unmatched.map { "'\($0)'" }.joined(separator: ", ")
                              + " match\(unmatched.count == 1 ? "es" : "") no tensor of the model",
                              log: "fix: use layer names as in the checkpoint, e.g. proj_out or transformer_blocks.0.*")
        }
        var manifest = m.manifest
        let names = m.manifest.tensors.keys.sorted()
        let todo = names.filter { n in m.manifest.tensors[n].map { LinearQuantiser.shouldQuantise(name: n, shape: $0.object.shape, options: options) } ?? false }
        let bar = ctx.progress.bar(total: todo.count, unit: "tensors")
        let source = m.manifest, store = ctx.store
        // Two weights per core at most in flight: each is decoded to fp32, quantised, and its objects stored.
        let results: [(String, ManifestTensor)]
        do {
            var done = 0
            results = try ParallelMap.map(todo, onBatch: { n in
                try Task.checkCancellation()
                bar.advance(by: n - done)
                done = n
            }) { name -> (String, ManifestTensor) in
                guard let t = source.tensors[name] else { throw ModelStoreError("internal: no tensor \(name)", fix: "report this") }
                do {
                    let w = try ModelStore.floats(name, of: source, store: store)
                    let enc = try LinearQuantiser.quantise(name: name, weights: w, shape: t.object.shape, sourceDType: t.object.dtype, options: options)
                    var companions: [String: TensorObject] = [:]
                    var main: TensorObject?
                    for (k, e) in enc {
                        let obj = TensorObject(digest: try store.put(e.data), dtype: e.dtype, shape: e.shape, bytes: e.data.count)
                        if k == name { main = obj } else { companions[String(k.dropFirst(name.count))] = obj }
                    }
                    guard let main else { throw ModelStoreError("internal: the quantiser returned no '\(name)'", fix: "report this") }
                    return (name, ManifestTensor(object: main, quantisation: TensorQuantisation(
                        format: options.format, blockSize: options.spec.blockSize, doubleQuant: options.doubleQuant,
                        originalShape: t.object.shape, originalDType: t.object.dtype, companions: companions)))
                } catch {
                    throw ModelStoreError("tensor '\(name)': \(error)", fix: "")
                }
            }
        } catch let e as CancellationError {
            throw e
        } catch let e as ModelStoreError {
            throw ctx.failure(e.message)
        }
        var before = 0, after = 0
        for (name, t) in results {
            before += manifest.tensors[name]?.object.bytes ?? 0
            after += t.objects.reduce(0) { $0 + $1.bytes }
            manifest.tensors[name] = t
        }
        let count = results.count
        if count == 0 {
            throw ctx.failure("no Linear weight is left to quantise (every 2-D *.weight is kept or absent)", log: "fix: shorten `keep`")
        }
        manifest.quantisation = QuantisationRecord(format: options.format, blockSize: options.spec.blockSize,
                                                   doubleQuant: options.doubleQuant, computeDType: options.computeDType, keep: options.keep)
        ctx.recorder.metric("quantised_tensors", Double(count))
        ctx.recorder.metric("weight_bytes", Double(manifest.weightBytes), unit: "B")
        ctx.recorder.metric("quantised_bytes_before", Double(before), unit: "B")
        ctx.recorder.metric("quantised_bytes_after", Double(after), unit: "B")
        return ["model": try ctx.putModel(manifest)]
    }
}

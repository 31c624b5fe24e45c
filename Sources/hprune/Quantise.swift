// `hprune quantise MODEL_DIR --out DIR`: quantises the Linear weights of a diffusers model folder without a
// recipe. nf4/fp4 are bit-identical to bitsandbytes and written in its key layout with diffusers'
// quantization_config, so `SD3Transformer2DModel.from_pretrained(DIR)` loads them with bitsandbytes.
import ArgumentParser
import ArtifactStore
import TensorFiles
import Compression
import Foundation
import ModelSpec
import ModelStore
import TensorCore
import YAMLSupport

struct Quantise: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantise",
        abstract: "Quantise a diffusers model folder's Linear weights (nf4, fp4, int4, int8).",
        discussion: """
            Every 2-D `*.weight` is quantised except layers matched by --keep; other tensors are copied. nf4/fp4
            use bitsandbytes' serialized layout (weight, weight.absmax, weight.quant_map, nested keys with
            --double-quant, weight.quant_state.bitsandbytes__nf4) and config.json gets diffusers'
            quantization_config; int4/int8 use hprune's own layout (diffusers cannot load those).

            Examples:
              hprune quantise models/sd35/transformer --format nf4 --out out/transformer-nf4
              hprune quantise pruned/ --format fp4 --block-size 128 --no-double-quant --keep proj_out --out out/fp4
            """,
        aliases: ["quantize"])

    @Argument(help: "The diffusers model folder (config.json + safetensors).", completion: .directory) var model: String
    @Option(help: "nf4, fp4, int4 (symmetric), int4-asym, or int8.") var format: String = "nf4"
    @Option(help: "Elements per absmax block (nf4/fp4: 32…4096, powers of two) or per group (int4).") var blockSize: Int = 64
    @Flag(inversion: .prefixedNo,
          help: "nf4/fp4: quantise the absmax vector to 8 bits (bitsandbytes double quantisation). Default: on for nf4/fp4, as the official code's Linear4bit (compress_statistics=True).")
    var doubleQuant: Bool? = nil
    @Option(help: "A layer or tensor name pattern to leave unquantised (repeatable), e.g. proj_out or 'norm_out.*'.") var keep: [String] = []
    @Option(help: "Compute dtype recorded for loaders: float32, bfloat16 or float16.") var computeDtype: String = "bfloat16"
    @Option(help: "The folder to create (must not exist, or be empty).", completion: .directory) var out: String
    @Flag(help: "Print a JSON summary.") var json = false

    func options() throws -> QuantiseOptions {
        guard let spec = QuantSpec(name: format, blockSize: blockSize) else {
            throw ValidationError("--format must be " + QuantFormat.allCases.map(\.rawValue).joined(separator: ", ") + ", got '\(format)'"
                                  + (Suggest.hint(for: format, in: QuantFormat.allCases.map(\.rawValue)).map { "; \($0)" } ?? ""))
        }
        let fourBit: Bool
        switch spec.format {
        case .nf4, .fp4:
            guard bitsandbytesBlockSizes.contains(blockSize) else {
                throw ValidationError("--block-size \(blockSize) is not one bitsandbytes accepts (\(bitsandbytesBlockSizes.map(String.init).joined(separator: ", ")))")
            }
            fourBit = true
        case .int4, .int4Asym:
            guard blockSize > 0 else { throw ValidationError("--block-size must be positive") }
            if doubleQuant == true { throw ValidationError("--double-quant applies to nf4/fp4 only") }
            fourBit = false
        case .int8:
            if doubleQuant == true { throw ValidationError("--double-quant applies to nf4/fp4 only") }
            fourBit = false
        }
        guard LoaderComputeDType(rawValue: computeDtype) != nil else {
            throw ValidationError("--compute-dtype must be " + LoaderComputeDType.allCases.map(\.rawValue).joined(separator: ", ")
                                  + (Suggest.hint(for: computeDtype, in: LoaderComputeDType.allCases.map(\.rawValue)).map { "; \($0)" } ?? ""))
        }
        return QuantiseOptions(spec: spec, doubleQuant: doubleQuant ?? fourBit, keep: keep, computeDType: computeDtype)
    }

    func validate() throws { _ = try options() }

    /// diffusers' quantization_config for a bitsandbytes 4-bit checkpoint (nil for int4 / int8).
    static func bitsandbytesConfig(format: QuantFormat, doubleQuant: Bool, computeDType: String) -> [String: JSONValue]? {
        LinearQuantiser.diffusersQuantizationConfig(QuantiseOptions(spec: QuantSpec(format, blockSize: 64),
                                                                    doubleQuant: doubleQuant, computeDType: computeDType))
    }

    func run() async throws {
        let options = try options()
        let checkpoint: ModelCheckpoint
        do { checkpoint = try ModelCheckpoint(path: model) } catch {
            Terminal.err("error: \(error)")
            throw Exit.invalid
        }
        let folder = checkpoint.folder
        if folder.config["quantization_config"] != nil || folder.tensors.contains(where: { $0.name.contains(LinearQuantiser.quantStateMarker) }) {
            Terminal.err("error: \(folder.path) is already quantised; quantise the unquantised model")
            throw Exit.invalid
        }
        let names = folder.tensors.map(\.name)
        let unmatched = LinearQuantiser.unmatchedKeepPatterns(keep, names: names)
        if !unmatched.isEmpty {
            Terminal.err("error: --keep " + unmatched.map { "'\($0)'" }.joined(separator: ", ") + " matches no tensor of \(folder.path)")
            throw Exit.invalid
        }
        // Streaming: `workers` weights at a time are decoded and quantised, and their encoded tensors appended to a
        // spool file beside the output; the safetensors file is then written one tensor at a time (quantised ones
        // read back from the spool, the rest from the mapped source). Memory beyond the mapped input stays at a few
        // tensors' f32 copies, whatever the model size.
        let todo = folder.tensors.filter { LinearQuantiser.shouldQuantise(name: $0.name, shape: $0.shape, options: options) && $0.dtype.isFloatingPoint }
        let todoNames = Set(todo.map(\.name))
        var entries = folder.tensors.filter { !todoNames.contains($0.name) }.map { TensorEntry(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
        let count = todo.count
        var config = folder.config
        if let qc = LinearQuantiser.diffusersQuantizationConfig(options) {
            config["quantization_config"] = .object(qc)
        } else {
            config["hprune_quantisation"] = .object(["format": .string(options.format.rawValue),
                                                     "block_size": options.spec.blockSize.map(JSONValue.int) ?? .null])
        }
        let dir = URL(fileURLWithPath: out)
        do {
            try ModelStore.writeFolder(at: dir) { tmp in
                let spool = try Spool(path: tmp.appendingPathComponent(".quantised.spool").path)
                defer { spool.remove() }
                let workers = ProcessInfo.processInfo.activeProcessorCount
                var start = 0
                while start < todo.count {
                    try Task.checkCancellation()
                    let batch = todo[start..<min(start + workers, todo.count)].map(\.name)
                    let results = try ParallelMap.map(batch) { name in
                        do {
                            let info = try folder.info(name)
                            return try LinearQuantiser.quantise(name: name, weights: try folder.floats(name), shape: info.shape,
                                                                sourceDType: info.dtype, options: options)
                        } catch {
                            throw ModelStoreError("\(folder.path): tensor '\(name)': \(error)", fix: "")
                        }
                    }
                    for r in results {
                        for (n, e) in r.sorted(by: { $0.key < $1.key }) {
                            try spool.append(n, e.data)
                            entries.append(TensorEntry(name: n, dtype: e.dtype, shape: e.shape))
                        }
                    }
                    start += batch.count
                }
                try SafetensorsWriter.write(entries: entries, metadata: ["format": "pt"],
                                            to: tmp.appendingPathComponent(DiffusersFolder.weightsName).path) { info in
                    if let d = try spool.read(info.name) { return d }
                    return try folder.withBytes(info.name) { Data($0) }
                }
                try AtomicFile.write(try ModelStore.configJSON(config), to: tmp.appendingPathComponent(DiffusersFolder.configName).path)
            }
        } catch let e as ModelStoreError where e.fix.isEmpty {
            Terminal.err("error: \(e.message)")
            throw Exit.failed
        } catch {
            Terminal.err("error: cannot write \(dir.path): \(PlainError.describe(error))")
            throw Exit.failed
        }
        if json {
            Terminal.printJSON(["out": dir.path, "format": options.format.rawValue, "block_size": options.spec.blockSize ?? NSNull(),
                                "double_quant": options.doubleQuant, "quantised_tensors": count, "tensors": entries.count])
        } else {
            print("wrote \(dir.path): \(count) Linear weights quantised to \(options.spec)\(options.doubleQuant ? " (double quant)" : ""), \(entries.count) tensors")
        }
    }
}

/// An append-only scratch file of named byte blobs (quantised tensors waiting for the safetensors header).
final class Spool {
    let path: String
    let handle: FileHandle
    var index: [String: (offset: UInt64, count: Int)] = [:]
    var end: UInt64 = 0

    init(path: String) throws {
        self.path = path
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forUpdatingAtPath: path) else {
            throw ModelStoreError("cannot create the scratch file \(path) (\(String(cString: strerror(errno))))", fix: "check free disk space and write permission")
        }
        handle = h
    }

    func append(_ name: String, _ data: Data) throws {
        try handle.seek(toOffset: end)
        try handle.write(contentsOf: data)
        index[name] = (end, data.count)
        end += UInt64(data.count)
    }

    /// The blob `name`, or nil when it was never appended.
    func read(_ name: String) throws -> Data? {
        guard let e = index[name] else { return nil }
        try handle.seek(toOffset: e.offset)
        let d = try handle.read(upToCount: e.count) ?? Data()
        guard d.count == e.count else {
            throw ModelStoreError("scratch file \(path): read \(d.count) of \(e.count) bytes for '\(name)'", fix: "check the disk")
        }
        return d
    }

    func remove() {
        try? handle.close()
        unlink(path)
    }
}

// `hprune export RUN:STAGE`: writes a Model artifact a run produced as a native diffusers folder (removed blocks
// renumbered away; nf4/fp4 in bitsandbytes' layout), the loader layout for sub-component removals, a GGUF file
// for ComfyUI-GGUF, or one safetensors file. Written to a temp path, fsynced, renamed.
import ArgumentParser
import ArtifactStore
import TensorFiles
import Foundation
import ModelStore

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model a run produced as a diffusers folder or a safetensors file.",
        discussion: """
            RUN is a run id, a unique prefix of one, or `latest`; STAGE is a stage of that run whose output is a
            model (`STAGE.PORT` picks a port; default the port named `model`).

            diffusers: removed blocks are dropped and the kept ones renumbered (num_layers, num_single_layers,
            dual_attention_layers rewritten; an SD3 model whose last block was removed gets an exact
            context_pre_only last block), so plain `from_pretrained(DIR)` loads the model hprune ran. Removed
            sub-components (attn, ff, norms of a kept block) have no diffusers form: such a model is refused
            unless --layout loader, which lists them under `hprune_removed` for
            Examples/diffusers/hprune_diffusers.py (`hprune_diffusers.load(DIR)`).

            Examples:
              hprune export latest:quantise --format diffusers --out out/sd35-hpp20-nf4
              hprune export latest:prune --layout loader --out out/pruned-loader
              hprune export latest:distill --format gguf --quant q8_0 --out out/flux-hpp20-Q8_0.gguf
              hprune export r-2026:prune --format safetensors --out out/pruned --store recipes/.hprune
            """)

    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: ArgumentHelp("The run and stage, RUN:STAGE[.PORT].", valueName: "run:stage")) var target: String
    @Option(help: "diffusers (config.json + diffusion_pytorch_model.safetensors), gguf (one FILE.gguf for ComfyUI-GGUF) or safetensors (model.safetensors with the config in its metadata).")
    var format: String = "diffusers"
    @Option(help: "gguf only: bf16, q8_0, q5_1, q5_0, q4_1 or q4_0 for the Linear weights (gguf-py's encodings).")
    var quant: String = "bf16"
    @Option(help: "diffusers only: native (plain from_pretrained; refuses sub-component removals) or loader (for Examples/diffusers/hprune_diffusers.py).")
    var layout: String = "native"
    @Option(help: "The folder to create (must not exist, or be empty).", completion: .directory) var out: String

    func validate() throws {
        guard ["diffusers", "safetensors", "gguf"].contains(format) else {
            throw ValidationError("--format must be diffusers, gguf or safetensors, got '\(format)'")
        }
        guard Self.ggufTypes.contains(quant.lowercased()) else {
            throw ValidationError("--quant must be one of \(Self.ggufTypes.joined(separator: ", ")), got '\(quant)'")
        }
        if format == "gguf" && !out.hasSuffix(".gguf") {
            throw ValidationError("--format gguf writes one file: --out must end in .gguf, got '\(out)'")
        }
        guard ["native", "loader"].contains(layout) else {
            throw ValidationError("--layout must be native or loader, got '\(layout)'")
        }
        guard let colon = target.firstIndex(of: ":"), colon != target.startIndex, target.index(after: colon) != target.endIndex else {
            throw ValidationError("expected RUN:STAGE (e.g. latest:prune), got '\(target)'")
        }
    }

    static let ggufTypes = ["bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"]

    func run() async throws {
        let colon = target.firstIndex(of: ":")!
        let runID = String(target[..<colon])
        var stageName = String(target[target.index(after: colon)...])
        var port = "model"
        if let dot = stageName.firstIndex(of: ".") {
            port = String(stageName[stageName.index(after: dot)...])
            stageName = String(stageName[..<dot])
        }
        let store = try storeOptions.openStandalone()
        let record: RunRecord
        do { record = try store.ledger.run(id: runID) } catch {
            Terminal.err("error: \(error)")
            throw Exit.invalid
        }
        let stages = try store.ledger.stages(of: record.id)
        guard let exec = stages.last(where: { $0.stage == stageName }) else {
            Terminal.err("error: run \(record.id) has no stage '\(stageName)' (stages: \(stages.map(\.stage).joined(separator: ", ")))")
            throw Exit.invalid
        }
        guard let digest = exec.outputs[port] else {
            let ports = exec.outputs.keys.sorted()
            Terminal.err("error: stage '\(stageName)' of run \(record.id) has no output '\(port)'"
                         + (ports.isEmpty ? " (it \(exec.status.rawValue) without outputs)" : " (outputs: \(ports.joined(separator: ", ")); write \(runID):\(stageName).PORT)"))
            throw Exit.invalid
        }
        let manifest: ModelManifest
        do { manifest = try ModelStore.manifest(digest, store: store) } catch {
            Terminal.err("error: output '\(port)' of stage '\(stageName)' is not a model: \(error)")
            throw Exit.invalid
        }
        let dir = URL(fileURLWithPath: out)
        var written = manifest
        var note = ""
        var metadata: [String: String] = [:]
        if format == "diffusers" || format == "gguf" {
            let native: NativeLayout
            do { native = try ModelStore.renumbered(manifest, store: store) } catch let e as ExportRefusal {
                Terminal.err("error: cannot export \(record.id):\(stageName) as a diffusers model: \(e)")
                throw Exit.invalid
            } catch {
                Terminal.err("error: cannot export \(record.id):\(stageName) as a diffusers model: \(error)")
                throw Exit.failed
            }
            written = native.manifest
            metadata = native.exportMetadata
            let subs = written.structure.removed
            if format == "diffusers" && layout == "native" && !subs.isEmpty {
                let original = manifest.structure.removed.filter { !$0.split(separator: ".").dropFirst(2).isEmpty }
                Terminal.err("""
                    error: \(record.id):\(stageName) has removed sub-components that diffusers has no module for: \(original.joined(separator: ", "))\(subs == original ? "" : " (in the export's numbering: \(subs.joined(separator: ", ")))"); `from_pretrained` would fill them with random weights.
                    fix: export with --layout loader and load with Examples/diffusers/hprune_diffusers.py (`hprune_diffusers.load(DIR)`), or prune whole blocks only
                    """)
                throw Exit.invalid
            }
            let blocks = manifest.structure.removed.filter { $0.split(separator: ".").count == 2 }.count
            if blocks > 0 { note += ", \(blocks) block\(blocks == 1 ? "" : "s") removed and the rest renumbered" }
            if let c = native.convertedToContextPreOnly { note += ", block \(c) made context_pre_only" }
            if !subs.isEmpty { note += ", hprune_removed: \(subs.joined(separator: " "))" }
        }
        do {
            if format == "diffusers" {
                let qc = manifest.quantisation.flatMap { q -> [String: JSONValue]? in
                    Quantise.bitsandbytesConfig(format: q.format, doubleQuant: q.doubleQuant, computeDType: q.computeDType)
                }
                try ModelStore.exportDiffusers(written, store: store, to: dir, quantizationConfig: qc, metadata: metadata,
                                               weightsName: written.structure.removed.isEmpty ? DiffusersFolder.weightsName : DiffusersFolder.loaderWeightsName)
            } else if format == "gguf" {
                try ModelStore.exportGGUF(written, store: store, to: dir, quant: GGMLType(cliName: quant)!)
            } else {
                try ModelStore.exportSafetensors(manifest, store: store, to: dir)
            }
        } catch let e as ExportRefusal {
            Terminal.err("error: cannot export \(record.id):\(stageName) as \(format): \(e)")
            throw Exit.invalid
        } catch {
            Terminal.err("error: cannot export to \(dir.path): \(PlainError.describe(error))")
            throw Exit.failed
        }
        let removed = format == "safetensors" && !manifest.structure.removed.isEmpty ? ", \(manifest.structure.removed.count) removed" : note
        let q = format == "gguf" ? ", \(quant.lowercased())" : manifest.quantisation.map { ", \($0.format)" } ?? ""
        print("wrote \(dir.path) (\(written.tensors.count) tensors\(format == "gguf" ? "" : ", \(written.weightBytes) bytes")\(removed)\(q))")
    }
}

// `hprune export RUN:STAGE`: writes a Model artifact a run produced as a diffusers folder (config.json +
// safetensors; nf4/fp4 weights in bitsandbytes' key layout with diffusers' quantization_config) or as one
// safetensors file. Written to a temp folder, fsynced, renamed.
import ArgumentParser
import ArtifactStore
import Checkpoint
import Foundation
import ModelStore

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model a run produced as a diffusers folder or a safetensors file.",
        discussion: """
            RUN is a run id, a unique prefix of one, or `latest`; STAGE is a stage of that run whose output is a
            model (`STAGE.PORT` picks a port; default the port named `model`).

            Examples:
              hprune export latest:quantise --format diffusers --out out/sd35-hpp20-nf4
              hprune export r-2026:prune --format safetensors --out out/pruned --store recipes/.hprune
            """)

    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: ArgumentHelp("The run and stage, RUN:STAGE[.PORT].", valueName: "run:stage")) var target: String
    @Option(help: "diffusers (config.json + diffusion_pytorch_model.safetensors) or safetensors (model.safetensors with the config in its metadata).")
    var format: String = "diffusers"
    @Option(help: "The folder to create (must not exist, or be empty).", completion: .directory) var out: String

    func validate() throws {
        guard ["diffusers", "safetensors"].contains(format) else {
            throw ValidationError("--format must be diffusers or safetensors, got '\(format)'")
        }
        guard let colon = target.firstIndex(of: ":"), colon != target.startIndex, target.index(after: colon) != target.endIndex else {
            throw ValidationError("expected RUN:STAGE (e.g. latest:prune), got '\(target)'")
        }
    }

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
        do {
            if format == "diffusers" {
                let qc = manifest.quantisation.flatMap { q -> [String: JSONValue]? in
                    guard q.format == "nf4" || q.format == "fp4" else { return nil }
                    return Quantise.bitsandbytesConfig(type: q.format, doubleQuant: q.doubleQuant, computeDType: q.computeDType)
                }
                try ModelStore.exportDiffusers(manifest, store: store, to: dir, quantizationConfig: qc)
            } else {
                try ModelStore.exportSafetensors(manifest, store: store, to: dir)
            }
        } catch {
            Terminal.err("error: cannot export to \(dir.path): \(PlainError.describe(error))")
            throw Exit.failed
        }
        let removed = manifest.structure.removed.isEmpty ? "" : ", \(manifest.structure.removed.count) removed"
        let quant = manifest.quantisation.map { ", \($0.format)" } ?? ""
        print("wrote \(dir.path) (\(manifest.tensors.count) tensors, \(manifest.weightBytes) bytes\(removed)\(quant))")
    }
}

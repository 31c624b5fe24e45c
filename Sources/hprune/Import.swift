// `hprune import PATH`: reads a diffusers folder (plain, renumbered or loader layout, nf4/fp4) or a GGUF file in
// ComfyUI-GGUF's layout into the store as a Model artifact and prints its digest (and, with --json, every
// tensor's object digest, so an export → import round trip can be checked tensor by tensor).
import ArgumentParser
import ArtifactStore
import TensorFiles
import Foundation
import ModelStore

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import a diffusers folder or a GGUF file into the store as a model.",
        discussion: """
            A GGUF file needs the diffusers config: hprune's exports carry it (key hprune.diffusers_config); for
            other files pass the model's config.json with --config. F32/F16/BF16 tensors keep their bytes (and
            digests); GGML-quantised tensors (Q8_0, Q5_1, Q5_0, Q4_1, Q4_0) are dequantised to f32.

            Examples:
              hprune import out/pruned --json
              hprune import out/flux-hpp20-Q8_0.gguf
              hprune import flux1-schnell-Q4_0.gguf --config flux-schnell/transformer/config.json
            """)

    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "A diffusers model folder or a .gguf file.", completion: .file()) var path: String
    @Option(help: "GGUF only: the diffusers config.json to use.", completion: .file()) var config: String?
    @Flag(help: "Print the digest, architecture and every tensor's object digest as JSON.") var json = false

    func run() async throws {
        let store = try storeOptions.openStandalone()
        var cfg: [String: JSONValue]?
        if let config {
            guard let data = FileManager.default.contents(atPath: config), case .success(let v) = JSONValue.parse(data), let o = v.objectValue else {
                Terminal.err("error: \(config): cannot read a JSON object; pass the model's config.json")
                throw Exit.invalid
            }
            cfg = o
        }
        let url = URL(fileURLWithPath: path)
        let digest: Digest
        let manifest: ModelManifest
        do {
            digest = try ModelStore.importModel(at: url, store: store, config: cfg)
            manifest = try ModelStore.manifest(digest, store: store)
        } catch {
            Terminal.err("error: cannot import \(path): \(error)")
            throw Exit.invalid
        }
        if json {
            var tensors: [String: JSONValue] = [:]
            for (n, t) in manifest.tensors { tensors[n] = .string(t.object.digest.hex) }
            let out: [String: JSONValue] = ["digest": .string(digest.hex), "architecture": .string(manifest.architecture),
                                            "removed": .array(manifest.structure.removed.map(JSONValue.string)), "tensors": .object(tensors)]
            print(String(decoding: try ModelStore.configJSON(out), as: UTF8.self), terminator: "")
        } else {
            print("imported \(path) as model \(digest.hex) (\(manifest.architecture), \(manifest.tensors.count) tensors, \(manifest.weightBytes) bytes)")
        }
    }
}

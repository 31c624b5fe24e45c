// Shared plumbing of the model stages (prune, freeze, quantise): load an input `Model` (importing a
// `models:` source folder on first use), rebuild its structure, and phrase failures with the stage name and
// its recipe location.

import ArtifactStore
import TensorFiles
import Compression
import Foundation
import ModelSpec
import ModelStore
import Scheduler
import StageGraph

/// A model input of a running stage: its manifest and what ModelSpec makes of it.
struct LoadedModel {
    var digest: Digest
    var manifest: ModelManifest
    var structure: ModelStructure
    var removal: Removal
}

extension StageContext {
    /// `stage 'prune' (recipe.yaml:12:3): message`: every model-stage failure names the stage and where it is.
    func failure(_ message: String, log: String? = nil) -> StageFailure {
        StageFailure("stage '\(stage.name)' (\(stage.mark)): \(message)", log: log)
    }

    /// The `Model` bound at `path`: a source folder is imported into the store (once; re-imports are free).
    func loadModel(_ path: String) throws -> LoadedModel {
        guard let ref = input(path) else { throw failure("input '\(path)' is not bound") }
        let digest: Digest
        do {
            if let src = ref.sourcePath {
                digest = try ModelStore.importModel(at: src, store: store, sourceDigest: ref.digest)
            } else {
                digest = ref.digest
            }
        } catch let e as CancellationError {
            throw e
        } catch {
            let from = ref.sourcePath.map { " from \($0.path)" } ?? ""
            throw failure("cannot read the model '\(path)'\(from): \(error)")
        }
        let manifest: ModelManifest
        do { manifest = try ModelStore.manifest(digest, store: store) } catch { throw failure("\(error)") }
        let source = "model \(digest.short) config"
        do {
            let config = try ModelConfig.parse(manifest.config, file: source)
            let structure = ModelStructure(config)
            let removal = try Removal(parsing: manifest.structure.removed, in: structure)
            return LoadedModel(digest: digest, manifest: manifest, structure: structure, removal: removal)
        } catch {
            throw failure("the model '\(path)' is not one hprune understands: \(error)")
        }
    }

    /// Stores a manifest and returns its digest.
    func putModel(_ manifest: ModelManifest) throws -> Digest {
        try ModelStore.put(manifest, store: store)
    }
}

/// Range-list syntax checks shared by `prune` and `freeze` at plan time (no model needed).
enum RangeSyntax {
    /// Problems in an official range / address list (`"25-29,31-35,blocks.12.ff"`), without a model.
    static func problems(_ text: String, allowAddresses: Bool) -> [String] {
        var out: [String] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) {
            if part.hasPrefix("blocks.") {
                if !allowAddresses { out.append("'\(part)': only block ranges are allowed here"); continue }
                do { _ = try ComponentAddress(parsing: part) } catch { out.append("'\(part)': \(error)") }
                continue
            }
            do { _ = try PruneSelection.blockRanges(part, blockCount: Int.max) } catch let e as CompressionError {
                out.append(e.message + "; " + e.fix)
            } catch { out.append("\(error)") }
        }
        return out
    }
}

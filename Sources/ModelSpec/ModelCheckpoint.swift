// A diffusers folder opened together with its parsed config and structure, checked so that every
// tensor the config needs (after the folder's recorded removal) is present with the right shape.
//
// A pruned model records its removal in config.json under `hprune_removed` (a list of addresses
// such as "blocks.25" or "blocks.12.ff"); diffusers ignores the key, and the tensors of removed
// components are absent from the weights.

import TensorFiles

/// The config.json key under which a pruned model lists its removed addresses.
public let removedComponentsConfigKey = "hprune_removed"

/// A validated model checkpoint: folder, config, structure and removal.
public struct ModelCheckpoint: @unchecked Sendable {
    public let folder: DiffusersFolder
    public let config: ModelConfig
    public let structure: ModelStructure
    /// Components recorded as removed in config.json (`hprune_removed`).
    public let removal: Removal
    /// Tensors present in the weights that the model does not use (reported, not fatal).
    public let unexpectedTensors: [String]
    /// Tensors stored in a non-float dtype whose shape was therefore not checked (e.g. packed 4-bit).
    public let uncheckedTensors: [String]

    /// Opens and validates a diffusers model folder.
    ///
    /// Throws `ModelSpecError` for a bad config and `TensorFileError` for a malformed file, a
    /// missing tensor (`.missingTensor`, naming it and its expected shape) or a shape mismatch
    /// (`.shapeMismatch`, naming the tensor, its file offset and both shapes).
    public init(path: String) throws {
        folder = try DiffusersFolder(path: path)
        config = try ModelConfig.parse(folder.config, file: folder.configPath)
        var removed: [String] = []
        if let v = folder.config[removedComponentsConfigKey], !v.isNull {
            guard let a = v.arrayValue, a.allSatisfy({ $0.stringValue != nil }) else {
                throw ModelSpecError(source: folder.configPath, subject: removedComponentsConfigKey,
                                     message: "expected a list of address strings", fix: "e.g. [\"blocks.25\", \"blocks.12.ff\"]")
            }
            removed = a.compactMap(\.stringValue)
        }
        // Before the structure is built from the config: its size must be what the weights can back.
        try config.checkDimensions(against: folder, removed: removed, file: folder.configPath)
        structure = ModelStructure(config)
        do {
            removal = try Removal(parsing: removed, in: structure)
        } catch var e as ModelSpecError {
            e.source = folder.configPath + " (\(removedComponentsConfigKey))"
            throw e
        }
        let required = try structure.requiredTensors(after: removal)
        (unexpectedTensors, uncheckedTensors) = try Self.check(folder, against: required, structure: structure)
    }

    /// Checks `folder` holds every tensor in `required` with the expected shape.
    /// Returns (unexpected tensor names, tensors whose non-float storage was not shape-checked).
    public static func check(_ folder: DiffusersFolder, against required: [TensorSpec],
                             structure: ModelStructure) throws -> ([String], [String]) {
        var unchecked: [String] = []
        let arch = structure.config.architecture.rawValue
        for spec in required {
            guard folder.contains(spec.name) else {
                throw TensorFileError(
                    .missingTensor, file: folder.path, tensor: spec.name,
                    message: "config.json (\(arch), \(structure.blocks.count) blocks) needs this tensor with shape \(spec.shape), but no weight file has it",
                    fix: "use weights that match config.json, or record removed components under '\(removedComponentsConfigKey)'")
            }
            let info = try folder.info(spec.name)
            if !info.dtype.isFloatingPoint {
                unchecked.append(spec.name)
                continue
            }
            if info.shape != spec.shape {
                throw TensorFileError(
                    .shapeMismatch, file: try folder.file(for: spec.name).path, tensor: spec.name, offset: info.fileOffset,
                    message: "shape \(info.shape) in the file, but config.json implies \(spec.shape)",
                    fix: "use weights that match config.json (check num_attention_heads, attention_head_dim, and the *_dim keys)")
            }
        }
        let known = Set(required.map(\.name))
        let extra = folder.tensors.map(\.name).filter { !known.contains($0) }
        // Tensors of a non-float base weight (e.g. `x.weight` stored U8) may carry quantisation
        // companions (`x.weight.absmax`, …); those are not "unexpected".
        let companions = extra.filter { n in unchecked.contains { n.hasPrefix($0 + ".") } }
        return (extra.filter { !companions.contains($0) }.sorted(), unchecked)
    }
}

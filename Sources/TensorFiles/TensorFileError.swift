// The one error type of the TensorFiles module (tensor file I/O: safetensors, diffusers folders, GGUF). Every error says which file, which tensor (when
// there is one), at which byte offset, what is wrong, and how to fix it.

/// An error reading or writing a checkpoint (safetensors file or diffusers folder).
///
/// `description` reads like
/// `model.safetensors: tensor 'proj_out.weight' at byte 1032: error: shape [4, 4] of F32 needs 64 bytes but data_offsets span 60. fix: re-export the checkpoint`.
public struct TensorFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, for callers and tests that branch on it.
    public enum Kind: String, Sendable, Hashable, Codable {
        case cannotOpen
        case emptyFile
        case headerLengthTooLarge
        case headerBeyondFile
        case invalidJSON
        case headerNotObject
        case invalidEntry
        case unknownDType
        case invalidShape
        case shapeBytesMismatch
        case reversedOffsets
        case offsetsOutOfBounds
        case overlappingTensors
        case missingTensor
        case unexpectedTensor
        case dtypeMismatch
        case shapeMismatch
        case invalidIndex
        case invalidConfig
        case missingFile
        case invalidWrite
        case ioFailure
    }

    /// What went wrong.
    public var kind: Kind
    /// The file the problem is in (path as given by the caller).
    public var file: String
    /// The tensor concerned, if any.
    public var tensor: String?
    /// Byte offset in `file` where the problem is, if known.
    public var offset: Int?
    /// What is wrong, in one sentence.
    public var message: String
    /// How to fix it.
    public var fix: String

    public init(_ kind: Kind, file: String, tensor: String? = nil, offset: Int? = nil, message: String, fix: String) {
        self.kind = kind
        self.file = file
        self.tensor = tensor
        self.offset = offset
        self.message = message
        self.fix = fix
    }

    public var description: String {
        var s = file
        if let tensor { s += ": tensor '\(tensor)'" }
        if let offset { s += " at byte \(offset)" }
        return s + ": error: \(message). fix: \(fix)"
    }
}

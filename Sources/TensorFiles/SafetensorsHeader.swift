// Parsing and validation of a safetensors header, separate from file access so the checks are a
// pure function of (header bytes, file size).
//
// File layout:
//   [0, 8)                 u64 little-endian N = header length in bytes
//   [8, 8+N)               JSON object: {"__metadata__": {str: str}?, name: {dtype, shape, data_offsets}}
//   [8+N, file end)        data section; data_offsets are relative to its start

import Foundation

/// One tensor's entry in a safetensors header.
public struct TensorInfo: Sendable, Hashable, Codable {
    /// The tensor's name (`transformer_blocks.0.attn.to_q.weight`).
    public var name: String
    /// Element type.
    public var dtype: StorageDType
    /// Shape, outermost first; `[]` is a scalar.
    public var shape: [Int]
    /// Byte range relative to the start of the data section.
    public var dataOffsets: Range<Int>
    /// Absolute byte offset of the data in the file (8 + header length + lower bound).
    public var fileOffset: Int

    /// Number of elements (product of the shape; 1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
    /// Number of bytes of data.
    public var byteCount: Int { dataOffsets.count }
}

/// The validated header of a safetensors file.
public struct SafetensorsHeader: Sendable, Hashable {
    /// Largest header accepted (as the reference implementation: 100 MB).
    public static let maxHeaderLength = 100_000_000

    /// Length in bytes of the JSON header (N).
    public var headerLength: Int
    /// Absolute offset of the data section (8 + N).
    public var dataStart: Int { 8 + headerLength }
    /// Tensors in data order (ascending offsets).
    public var tensors: [TensorInfo]
    /// The `__metadata__` map (empty when absent).
    public var metadata: [String: String]

    /// Reads the 8-byte header length and checks it against the limits and the file size,
    /// before anything is allocated for the header.
    public static func headerLength(prefix: UInt64, fileSize: Int, file: String) throws -> Int {
        if prefix > UInt64(maxHeaderLength) {
            throw TensorFileError(
                .headerLengthTooLarge, file: file, offset: 0,
                message: "header length \(prefix) bytes exceeds the 100 MB limit",
                fix: "this is not a safetensors file or it is corrupt; re-download or re-export it")
        }
        let n = Int(prefix)
        if n > fileSize - 8 {
            throw TensorFileError(
                .headerBeyondFile, file: file, offset: 0,
                message: "header length \(n) bytes runs past the end of the \(fileSize)-byte file",
                fix: "the file is truncated or not a safetensors file; re-download or re-export it")
        }
        return n
    }

    /// Parses and validates the JSON header.
    ///
    /// Checks: an object; `__metadata__` maps strings to strings; every other entry has a known
    /// dtype, a shape of non-negative integers whose element count × dtype size does not overflow
    /// and equals the byte length of `data_offsets`; offsets are ordered, inside the data section,
    /// and no two tensors overlap.
    public static func parse(json: Data, fileSize: Int, file: String) throws -> SafetensorsHeader {
        let n = json.count
        let dataLength = fileSize - 8 - n
        /// Absolute offset of a tensor's key in the header, for error messages.
        func keyOffset(_ name: String) -> Int {
            let needle = Data(CompactJSON.string(name).utf8)
            if let r = json.range(of: needle) { return 8 + (r.lowerBound - json.startIndex) }
            return 8
        }

        let root: JSONValue
        switch JSONValue.parse(json) {
        case .success(let v): root = v
        case .failure(let why):
            throw TensorFileError(
                .invalidJSON, file: file, offset: 8,
                message: "header is not valid JSON (\(why))",
                fix: "the header is corrupt; re-export the file with the safetensors library")
        }
        guard let object = root.objectValue else {
            throw TensorFileError(
                .headerNotObject, file: file, offset: 8,
                message: "header is \(root.typeName), expected a JSON object of tensors",
                fix: "re-export the file with the safetensors library")
        }

        var metadata: [String: String] = [:]
        var tensors: [TensorInfo] = []
        tensors.reserveCapacity(object.count)
        for (name, value) in object {
            if name == "__metadata__" {
                guard let m = value.objectValue else {
                    throw TensorFileError(
                        .invalidEntry, file: file, offset: keyOffset(name),
                        message: "__metadata__ is \(value.typeName), expected an object of strings",
                        fix: "rewrite the metadata as a string-to-string map")
                }
                for (k, v) in m {
                    guard let s = v.stringValue else {
                        throw TensorFileError(
                            .invalidEntry, file: file, offset: keyOffset(name),
                            message: "__metadata__ value for '\(k)' is \(v.typeName), expected a string",
                            fix: "store metadata values as strings")
                    }
                    metadata[k] = s
                }
                continue
            }
            func bad(_ kind: TensorFileError.Kind, _ message: String, _ fix: String) -> TensorFileError {
                TensorFileError(kind, file: file, tensor: name, offset: keyOffset(name), message: message, fix: fix)
            }
            guard let entry = value.objectValue else {
                throw bad(.invalidEntry, "entry is \(value.typeName), expected {dtype, shape, data_offsets}",
                          "re-export the file with the safetensors library")
            }
            guard let dtypeName = entry["dtype"]?.stringValue else {
                throw bad(.invalidEntry, "entry has no string 'dtype'", "re-export the file with the safetensors library")
            }
            guard let dtype = StorageDType(rawValue: dtypeName) else {
                throw bad(.unknownDType, "unknown dtype '\(dtypeName)' (known: \(StorageDType.knownNames))",
                          "convert the tensor to one of the known dtypes, e.g. F32, F16 or BF16")
            }
            guard let shapeArray = entry["shape"]?.arrayValue else {
                throw bad(.invalidEntry, "entry has no array 'shape'", "re-export the file with the safetensors library")
            }
            var shape: [Int] = []
            var elements = 1
            var overflow = false
            for dim in shapeArray {
                guard let d = dim.intValue, d >= 0 else {
                    throw bad(.invalidShape, "shape \(render(shapeArray)) has a dimension that is not a non-negative integer",
                              "shapes must be lists of non-negative integers; re-export the tensor")
                }
                shape.append(d)
                let (p, o) = elements.multipliedReportingOverflow(by: d)
                elements = p
                overflow = overflow || o
            }
            let (bytes, o2) = elements.multipliedReportingOverflow(by: dtype.byteSize)
            if overflow || o2 {
                throw bad(.invalidShape, "shape \(shape) has more elements than can be addressed (overflow)",
                          "the header is corrupt; re-export the tensor")
            }
            guard let offs = entry["data_offsets"]?.arrayValue, offs.count == 2,
                  let begin = offs[0].intValue, let end = offs[1].intValue, begin >= 0, end >= 0 else {
                throw bad(.invalidEntry, "'data_offsets' must be two non-negative integers [begin, end]",
                          "re-export the file with the safetensors library")
            }
            if begin > end {
                throw bad(.reversedOffsets, "data_offsets [\(begin), \(end)] are reversed (begin > end)",
                          "the header is corrupt; re-export the file")
            }
            if end > dataLength {
                throw TensorFileError(
                    .offsetsOutOfBounds, file: file, tensor: name, offset: 8 + n + begin,
                    message: "data_offsets [\(begin), \(end)] end past the \(dataLength)-byte data section (file ends at byte \(fileSize))",
                    fix: "the file is truncated; re-download or re-export it")
            }
            if end - begin != bytes {
                throw TensorFileError(
                    .shapeBytesMismatch, file: file, tensor: name, offset: 8 + n + begin,
                    message: "shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes but data_offsets [\(begin), \(end)] span \(end - begin)",
                    fix: "the header is inconsistent; re-export the tensor")
            }
            tensors.append(TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end,
                                      fileOffset: 8 + n + begin))
        }
        tensors.sort { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name)
                     < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name) }
        // Overlap: after sorting by begin, each non-empty tensor must start at or after the end
        // of every earlier one.
        var furthest = 0
        var furthestName: String?
        for t in tensors where !t.dataOffsets.isEmpty {
            if t.dataOffsets.lowerBound < furthest, let other = furthestName {
                throw TensorFileError(
                    .overlappingTensors, file: file, tensor: t.name, offset: t.fileOffset,
                    message: "data_offsets [\(t.dataOffsets.lowerBound), \(t.dataOffsets.upperBound)] overlap tensor '\(other)' which ends at \(furthest)",
                    fix: "the header is corrupt; re-export the file")
            }
            if t.dataOffsets.upperBound > furthest {
                furthest = t.dataOffsets.upperBound
                furthestName = t.name
            }
        }
        return SafetensorsHeader(headerLength: n, tensors: tensors, metadata: metadata)
    }

    private static func render(_ a: [JSONValue]) -> String {
        "[" + a.map { v -> String in
            switch v {
            case .int(let i): String(i)
            case .double(let d): String(d)
            case .string(let s): "\"\(s)\""
            default: v.typeName
            }
        }.joined(separator: ", ") + "]"
    }
}

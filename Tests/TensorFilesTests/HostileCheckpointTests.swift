// Hostile safetensors files: each is a real file in a temp dir; each must give a TensorFileError
// naming the file (and the tensor and byte offset where there is one), never a crash, and never
// an allocation sized by the header's claims.

import TensorFiles
import Foundation
import Testing

/// Writes a file made of an 8-byte length prefix (default: the header's length), the header
/// text, and `data`; returns its path.
func hostileFile(_ header: String, data: [UInt8] = [], prefix: UInt64? = nil) throws -> String {
    var bytes = [UInt8]()
    let h = Array(header.utf8)
    withUnsafeBytes(of: (prefix ?? UInt64(h.count)).littleEndian) { bytes += $0 }
    bytes += h + data
    let path = try tempDir() + "/hostile.safetensors"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

/// Opens `path` expecting a TensorFileError of `kind` that names the file.
@discardableResult
func expectRefused(_ path: String, _ kind: TensorFileError.Kind, sourceLocation: SourceLocation = #_sourceLocation) throws -> TensorFileError {
    let e = try #require(throws: TensorFileError.self, sourceLocation: sourceLocation) { try SafetensorsFile(path: path) }
    #expect(e.kind == kind, "got \(e)", sourceLocation: sourceLocation)
    #expect(e.file == path, sourceLocation: sourceLocation)
    #expect(e.description.contains(path) && e.description.contains("fix:"), sourceLocation: sourceLocation)
    return e
}

@Suite struct HostileCheckpoints {
    @Test func emptyFile() throws {
        let path = try tempDir() + "/empty.safetensors"
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        let e = try expectRefused(path, .emptyFile)
        #expect(e.offset == 0)
        let short = try tempDir() + "/short.safetensors"
        #expect(FileManager.default.createFile(atPath: short, contents: Data([1, 2, 3])))
        try expectRefused(short, .emptyFile)
    }

    @Test func truncatedData() throws {
        let good = try SafetensorsWriter.serialize([TensorPayload(name: "a", shape: [2], floats: [1, 2]),
                                                    TensorPayload(name: "b", shape: [4], floats: [1, 2, 3, 4])])
        let path = try tempDir() + "/trunc.safetensors"
        try good.dropLast(5).write(to: URL(fileURLWithPath: path))
        let e = try expectRefused(path, .offsetsOutOfBounds)
        #expect(e.tensor == "b")
        #expect(e.offset != nil && e.offset! > 8)
    }

    @Test func headerLengthLargerThanFile() throws {
        let path = try hostileFile("{}", prefix: 1000)
        let e = try expectRefused(path, .headerBeyondFile)
        #expect(e.offset == 0)
    }

    @Test func headerClaimingOneTerabyteIsRefusedFromTheLengthAlone() throws {
        let path = try hostileFile("{}", prefix: 1 << 40)
        try expectRefused(path, .headerLengthTooLarge)
        // Just over the 100 MB limit is refused too, even though nothing is read.
        try expectRefused(try hostileFile("{}", prefix: 100_000_001), .headerLengthTooLarge)
    }

    @Test func invalidJSON() throws {
        let e = try expectRefused(try hostileFile("{\"a\": {\"dtype\": \"F32\", "), .invalidJSON)
        #expect(e.offset == 8)
    }

    @Test func headerNotAnObject() throws {
        try expectRefused(try hostileFile("[1, 2, 3]"), .headerNotObject)
        try expectRefused(try hostileFile("\"text\""), .headerNotObject)
    }

    @Test func unknownDType() throws {
        let e = try expectRefused(try hostileFile(#"{"w":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), .unknownDType)
        #expect(e.tensor == "w")
        #expect(e.offset == 9)  // the key "w" is the first byte after '{'
        #expect(e.message.contains("F7"))
    }

    @Test func shapeBytesMismatch() throws {
        let e = try expectRefused(try hostileFile(#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#, data: Array(repeating: 0, count: 12)),
                                  .shapeBytesMismatch)
        #expect(e.tensor == "w")
        #expect(e.message.contains("16") && e.message.contains("12"))
    }

    @Test func negativeShape() throws {
        let e = try expectRefused(try hostileFile(#"{"w":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]}}"#, data: Array(repeating: 0, count: 16)),
                                  .invalidShape)
        #expect(e.tensor == "w")
    }

    @Test func overflowingShape() throws {
        let e = try expectRefused(try hostileFile(#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#, data: Array(repeating: 0, count: 16)),
                                  .invalidShape)
        #expect(e.message.contains("overflow"))
        // A dimension too large for any integer type, and a fractional one.
        try expectRefused(try hostileFile(#"{"w":{"dtype":"F32","shape":[1e30],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), .invalidShape)
        try expectRefused(try hostileFile(#"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), .invalidShape)
        try expectRefused(try hostileFile(#"{"w":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]), .invalidShape)
    }

    @Test func overlappingOffsets() throws {
        let header = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#
        let e = try expectRefused(try hostileFile(header, data: Array(repeating: 0, count: 24)), .overlappingTensors)
        #expect(e.tensor == "b")
        #expect(e.message.contains("'a'"))
    }

    @Test func reversedOffsets() throws {
        let e = try expectRefused(try hostileFile(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}}"#, data: Array(repeating: 0, count: 16)),
                                  .reversedOffsets)
        #expect(e.tensor == "w")
    }

    @Test func offsetsPastTheEnd() throws {
        let e = try expectRefused(try hostileFile(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[1000000,1000016]}}"#, data: [0]),
                                  .offsetsOutOfBounds)
        #expect(e.tensor == "w")
    }

    @Test func malformedEntriesAndMetadata() throws {
        try expectRefused(try hostileFile(#"{"w":5}"#), .invalidEntry)
        try expectRefused(try hostileFile(#"{"w":{"dtype":"F32","shape":[1]}}"#), .invalidEntry)
        try expectRefused(try hostileFile(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#), .invalidEntry)
        try expectRefused(try hostileFile(#"{"__metadata__":{"k":1}}"#), .invalidEntry)
        try expectRefused(try hostileFile(#"{"__metadata__":[]}"#), .invalidEntry)
    }

    @Test func nonFiniteWeightsAreReported() throws {
        let path = try tempDir() + "/nan.safetensors"
        try SafetensorsWriter.write([TensorPayload(name: "ok", shape: [2], floats: [1, 2]),
                                     TensorPayload(name: "bad.nan", shape: [2], floats: [1, .nan]),
                                     TensorPayload(name: "bad.inf", shape: [1], floats: [-.infinity]),
                                     TensorPayload(name: "bf", dtype: .bf16, shape: [1], data: Data([0x80, 0x7f]))],  // +Inf in BF16
                                    to: path)
        let f = try SafetensorsFile(path: path)
        #expect(Set(f.nonFiniteTensors()) == ["bad.nan", "bad.inf", "bf"])
    }

    @Test func missingFileNamesThePath() throws {
        try expectRefused("/nonexistent/x.safetensors", .cannotOpen)
    }
}

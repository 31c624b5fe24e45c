// Reading and writing safetensors against files written by Python's `safetensors` (committed
// fixtures), byte for byte; diffusers folders single-file and sharded.

import TensorFiles
import Foundation
import Testing

/// Tests/Fixtures/models.
let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/models").path

/// A fresh temporary directory.
func tempDir() throws -> String {
    let p = NSTemporaryDirectory() + "hprune-ckpt-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    return p
}

@Suite struct SafetensorsCompat {
    let pyFile = fixtures + "/compat/python_written.safetensors"

    @Test func readsPythonWrittenFile() throws {
        let f = try SafetensorsFile(path: pyFile)
        let desc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/compat/python_written.json"))) as! [String: [String: Any]]
        #expect(Set(f.names) == Set(desc.keys))
        #expect(f.metadata == ["format": "pt"])
        let dtypes: [String: StorageDType] = ["float32": .f32, "float16": .f16, "bfloat16": .bf16, "int64": .i64, "bool": .bool,
                                              "uint8": .u8, "int8": .i8, "int32": .i32, "float64": .f64]
        for (name, d) in desc {
            let info = try f.info(name)
            #expect(info.dtype == dtypes[d["dtype"] as! String], "\(name)")
            #expect(info.shape == d["shape"] as! [Int], "\(name)")
            let want = (d["values"] as! [Any]).map { ($0 as? Double) ?? Double($0 as! String)! }  // "nan", "inf" as strings
            let got: [Double]
            switch info.dtype {
            case .f32, .f16, .bf16, .f64: got = try f.floats(name).map(Double.init)
            case .i64: got = try f.withBytes(name) { r in (0..<r.count / 8).map { Double(r.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) } }
            case .i32: got = try f.withBytes(name) { r in (0..<r.count / 4).map { Double(r.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) } }
            case .i8: got = try f.withBytes(name) { r in r.map { Double(Int8(bitPattern: $0)) } }
            case .u8, .bool: got = try f.withBytes(name) { r in r.map { Double($0) } }
            default: Issue.record("unexpected dtype"); continue
            }
            #expect(got.count == want.count, "\(name)")
            for (a, b) in zip(got, want) where !(a.isNaN && b.isNaN) {
                #expect(Float(a) == Float(b), "\(name): \(a) vs \(b)")  // JSON text → Double may differ in the last ulp
            }
        }
    }

    /// Our writer, given the same tensors in any order, produces Python's file byte for byte
    /// (so Python reads our files as it reads its own).
    @Test func writerIsByteIdenticalToPython() throws {
        let f = try SafetensorsFile(path: pyFile)
        var payloads = try f.tensors.map { t in
            TensorPayload(name: t.name, dtype: t.dtype, shape: t.shape, data: try f.bytes(t.name))
        }
        payloads.reverse()
        let ours = try SafetensorsWriter.serialize(payloads, metadata: ["format": "pt"])
        let theirs = try Data(contentsOf: URL(fileURLWithPath: pyFile))
        #expect(ours == theirs)

        let dir = try tempDir()
        let out = dir + "/swift_written.safetensors"
        try SafetensorsWriter.write(payloads, metadata: ["format": "pt"], to: out)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == theirs)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["swift_written.safetensors"])  // no temp left
        // Record mode: leave our file next to Python's; generate.py then loads it with Python.
        if ProcessInfo.processInfo.environment["HPRUNE_RECORD_FIXTURES"] == "1" {
            try SafetensorsWriter.write(payloads, metadata: ["format": "pt"], to: fixtures + "/compat/swift_written.safetensors")
        }
    }

    @Test func headerIsPaddedToEightBytesWithSpaces() throws {
        let data = try SafetensorsWriter.serialize([TensorPayload(name: "a", shape: [1], floats: [1])], metadata: nil)
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        #expect(n % 8 == 0)
        let header = String(decoding: data[8..<(8 + n)], as: UTF8.self)
        #expect(header.hasPrefix("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"))
        #expect(header.trimmingCharacters(in: .whitespaces).count + header.filter { $0 == " " }.count == header.count)
    }

    @Test func nonFiniteScanNamesTensors() throws {
        let f = try SafetensorsFile(path: pyFile)
        #expect(Set(f.nonFiniteTensors()) == ["x_nan", "x_inf16"])
    }

    @Test func writerRejectsBadPayloads() throws {
        #expect(throws: TensorFileError.self) {
            try SafetensorsWriter.serialize([TensorPayload(name: "a", dtype: .f32, shape: [2], data: Data(count: 4))])
        }
        #expect(throws: TensorFileError.self) {
            try SafetensorsWriter.serialize([TensorPayload(name: "a", shape: [1], floats: [1]),
                                             TensorPayload(name: "a", shape: [1], floats: [2])])
        }
    }

    @Test func jsonEscapingMatchesSerde() throws {
        let name = "we\"ird\\name/é\n\u{01}"
        let data = try SafetensorsWriter.serialize([TensorPayload(name: name, shape: [], floats: [3])], metadata: nil)
        let dir = try tempDir()
        try data.write(to: URL(fileURLWithPath: dir + "/x.safetensors"))
        let f = try SafetensorsFile(path: dir + "/x.safetensors")
        #expect(f.names == [name])
        #expect(try f.floats(name) == [3])
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        #expect(String(decoding: data[8..<(8 + n)], as: UTF8.self).hasPrefix("{\"we\\\"ird\\\\name/é\\n\\u0001\":"))
    }
}

@Suite struct DiffusersFolderTests {
    @Test func opensFixtureFolder() throws {
        let folder = try DiffusersFolder(path: fixtures + "/sd3_tiny")
        #expect(folder.config["_class_name"]?.stringValue == "SD3Transformer2DModel")
        #expect(folder.files.count == 1)
        #expect(try folder.info("proj_out.weight").shape == [16, 16])
        #expect(folder.nonFiniteTensors().isEmpty)
    }

    @Test func shardedWriteReadsBack() throws {
        let dir = try tempDir() + "/m"
        let tensors = (0..<5).map { i in TensorPayload(name: "t\(i)", shape: [4, 4], floats: (0..<16).map { Float($0 + i) }) }
        let config = Data("{\"_class_name\": \"X\"}".utf8)
        try DiffusersFolder.write(config: config, tensors: tensors, to: dir, maxShardBytes: 150)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(names.contains(DiffusersFolder.indexName))
        #expect(names.filter { $0.hasSuffix(".safetensors") }.count == 3)
        let folder = try DiffusersFolder(path: dir)
        #expect(folder.files.count == 3)
        for i in 0..<5 { #expect(try folder.floats("t\(i)") == (0..<16).map { Float($0 + i) }) }
    }

    @Test func singleFileWriteReadsBack() throws {
        let dir = try tempDir() + "/m"
        try DiffusersFolder.write(config: Data("{}".utf8), tensors: [TensorPayload(name: "w", shape: [2], floats: [1, 2])], to: dir)
        let folder = try DiffusersFolder(path: dir)
        #expect(try folder.floats("w") == [1, 2])
        #expect(try SafetensorsFile(path: dir + "/" + DiffusersFolder.weightsName).metadata == ["format": "pt"])
    }

    @Test func indexNamingMissingShardIsAnError() throws {
        let dir = try tempDir()
        try Data("{}".utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        try Data("{\"weight_map\": {\"a\": \"nope.safetensors\"}}".utf8).write(to: URL(fileURLWithPath: dir + "/" + DiffusersFolder.indexName))
        let e = try #require(throws: TensorFileError.self) { try DiffusersFolder(path: dir) }
        #expect(e.kind == .missingFile)
        #expect(e.file.hasSuffix("nope.safetensors"))
    }

    @Test func missingWeightsAndConfigAreErrors() throws {
        let dir = try tempDir()
        let e1 = try #require(throws: TensorFileError.self) { try DiffusersFolder(path: dir) }
        #expect(e1.kind == .missingFile && e1.file.hasSuffix("config.json"))
        try Data("{}".utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let e2 = try #require(throws: TensorFileError.self) { try DiffusersFolder(path: dir) }
        #expect(e2.kind == .missingFile && e2.message.contains(DiffusersFolder.weightsName))
        try Data("[1]".utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let e3 = try #require(throws: TensorFileError.self) { try DiffusersFolder(path: dir) }
        #expect(e3.kind == .invalidConfig)
    }
}

@Suite struct StreamingWrites {
    let payloads = [TensorPayload(name: "b", shape: [3], floats: [1, 2, 3]),
                    TensorPayload(name: "a", dtype: .bf16, shape: [2], data: Data([0x80, 0x3f, 0x00, 0x40]))]

    @Test func streamedFileEqualsSerialized() throws {
        let path = try tempDir() + "/s.safetensors"
        let byName = Dictionary(uniqueKeysWithValues: payloads.map { ($0.name, $0.data) })
        var order: [String] = []
        try SafetensorsWriter.write(entries: payloads.map { TensorEntry(name: $0.name, dtype: $0.dtype, shape: $0.shape) },
                                    metadata: ["format": "pt"], to: path) { info in
            order.append(info.name)
            return byName[info.name]!
        }
        #expect(order == ["b", "a"])  // F32 before BF16, as the reference lays them out
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == SafetensorsWriter.serialize(payloads, metadata: ["format": "pt"]))
        #expect(try SafetensorsFile(path: path).floats("a") == [1, 2])
    }

    /// A failure half-way leaves neither the target nor a temporary file.
    @Test func failedWriteLeavesNothing() throws {
        let dir = try tempDir()
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try SafetensorsWriter.write(entries: payloads.map { TensorEntry(name: $0.name, dtype: $0.dtype, shape: $0.shape) },
                                        to: dir + "/x.safetensors") { info in
                if info.name == "a" { throw Boom() }
                return payloads[0].data
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        // Wrong byte count is refused the same way.
        #expect(throws: TensorFileError.self) {
            try SafetensorsWriter.write(entries: [TensorEntry(name: "a", dtype: .f32, shape: [2])], to: dir + "/y.safetensors") { _ in Data(count: 4) }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }
}

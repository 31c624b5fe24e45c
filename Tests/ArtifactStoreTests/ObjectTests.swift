// Objects: digests, round trips, idempotent writes, streaming file import, and corruption found on read.
import Foundation
import Testing
@testable import ArtifactStore

@Suite struct DigestTests {
    @Test func knownVector() {
        // FIPS 180-2 test vector for "abc".
        #expect(Digest.of(Data("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func parsesOnlySixtyFourHexDigits() throws {
        let hex = String(repeating: "ab", count: 32)
        #expect(Digest(hex: hex)?.hex == hex)
        #expect(Digest(hex: hex.uppercased())?.hex == hex)
        #expect(Digest(hex: String(hex.dropLast())) == nil)
        #expect(Digest(hex: String(hex.dropLast()) + "g") == nil)
        let encoded = try JSONEncoder().encode(["x": Digest(hex: hex)!])
        #expect(String(decoding: encoded, as: UTF8.self) == "{\"x\":\"\(hex)\"}")
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Digest.self, from: Data("\"nope\"".utf8)) }
    }

    @Test func scanFindsExactlyTheSixtyFourDigitRuns() {
        let a = String(repeating: "1", count: 64), b = String(repeating: "f", count: 64)
        let text = "{\"t\":\"\(a)\",\"u\":[\"\(b)\"],\"long\":\"\(a)0\",\"short\":\"\(a.dropLast())\"}"
        #expect(scanDigests(Data(text.utf8)).map(\.hex) == [a, b])
    }
}

@Suite struct ObjectTests {
    @Test func roundTripAndLayout() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let digest = try store.put(Data("hello".utf8))
        #expect(digest.hex == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        #expect(store.path(of: digest).path == dir.path + "/objects/sha256/2c/" + digest.hex.dropFirst(2))
        #expect(try store.data(digest) == Data("hello".utf8))
        #expect(store.contains(digest))
        #expect(store.size(of: digest) == 5)
        // Objects are read-only, and nothing is left in tmp/.
        let mode = try FileManager.default.attributesOfItem(atPath: store.path(of: digest).path)[.posixPermissions] as? Int
        #expect(mode == 0o444)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/tmp").isEmpty)
        for sub in ["objects/sha256", "actions", "tmp", "ledger.sqlite"] {
            #expect(FileManager.default.fileExists(atPath: dir.path + "/" + sub))
        }
    }

    @Test func putIsIdempotent() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let first = try store.put(Data("same".utf8))
        let inode = try FileManager.default.attributesOfItem(atPath: store.path(of: first).path)[.systemFileNumber] as? UInt64
        let second = try store.put(Data("same".utf8))
        let inodeAfter = try FileManager.default.attributesOfItem(atPath: store.path(of: first).path)[.systemFileNumber] as? UInt64
        #expect(first == second)
        #expect(inode == inodeAfter, "the second put must not rewrite the object")
        #expect(try store.list().count == 1)
    }

    @Test func emptyObject() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let digest = try store.put(Data())
        #expect(digest.hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(try store.data(digest).isEmpty)
    }

    @Test func putFileStreamsAcrossChunkBoundaries() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.sub("store"))
        // 9 MiB + 3 bytes: two full 4 MiB chunks and a ragged tail.
        let bytes = pseudoRandomData(count: 9 << 20 + 3, seed: 7)
        let file = dir.sub("big.bin")
        try bytes.write(to: file)
        let digest = try store.putFile(at: file)
        #expect(digest == Digest.of(bytes))
        #expect(store.size(of: digest) == Int64(bytes.count))
        try store.verify(digest)
        #expect(try store.data(digest) == bytes)
        #expect(try store.putFile(at: file) == digest)
        #expect(try store.put(bytes) == digest)
    }

    @Test func putFileRefusesDirectories() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.sub("store"))
        #expect(throws: StoreError.unsupportedFile(path: dir.path, reason: "not a regular file")) {
            try store.putFile(at: dir.url)
        }
    }

    @Test func missingObjectIsAnError() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let digest = Digest.of(Data("never stored".utf8))
        #expect(!store.contains(digest))
        #expect(throws: StoreError.missing(digest, path: store.path(of: digest).path)) { try store.data(digest) }
        let message = StoreError.missing(digest, path: "x").description
        #expect(message.contains("hprune"))
    }

    @Test func corruptObjectIsDetectedAndEvicted() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let log = WarningLog()
        let store = try ArtifactStore(root: dir.url, onWarning: log.handler)
        let digest = try store.put(Data("precious weights".utf8))
        try flipByte(at: 3, of: store.path(of: digest).path)
        #expect(throws: StoreError.corrupt(digest, path: store.path(of: digest).path)) { try store.data(digest) }
        #expect(!store.contains(digest), "a corrupt object must be evicted, never trusted again")
        #expect(log.warnings.count == 1)
        #expect(StoreError.corrupt(digest, path: "p").description.contains("hprune cache verify"))
        // Putting the bytes again heals the store.
        #expect(try store.put(Data("precious weights".utf8)) == digest)
        #expect(try store.data(digest) == Data("precious weights".utf8))
    }

    @Test func streamingVerifyEvictsToo() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url, onWarning: WarningLog().handler)
        let digest = try store.put(pseudoRandomData(count: 5 << 20, seed: 3))
        try store.verify(digest)
        try flipByte(at: 4 << 20 + 11, of: store.path(of: digest).path)
        #expect(throws: StoreError.corrupt(digest, path: store.path(of: digest).path)) { try store.verify(digest) }
        #expect(!store.contains(digest))
    }

    @Test func truncatedObjectWithSameNameIsReplacedOnPut() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let bytes = Data("0123456789".utf8)
        let digest = try store.put(bytes)
        let path = store.path(of: digest).path
        chmod(path, 0o644)
        try Data("01234".utf8).write(to: URL(fileURLWithPath: path))
        #expect(try store.put(bytes) == digest)
        #expect(try store.data(digest) == bytes)
    }

    @Test func staleTempFilesAreRemovedOnOpenFreshOnesKept() throws {
        let dir = try TempDir(); defer { dir.remove() }
        _ = try ArtifactStore(root: dir.url)
        let stale = dir.sub("tmp/123-crashed.tmp"), fresh = dir.sub("tmp/456-writing.tmp")
        try write("half an object", to: stale)
        try write("being written", to: fresh)
        try setModified(stale, secondsAgo: 120)
        _ = try ArtifactStore(root: dir.url)
        #expect(!FileManager.default.fileExists(atPath: stale.path))
        #expect(FileManager.default.fileExists(atPath: fresh.path))
    }

    @Test func errorsNameThePathAndTheFix() {
        let e = StoreError.io(path: "/s/objects/ab/cd", operation: "write", code: ENOSPC)
        #expect(e.description == "/s/objects/ab/cd: error: cannot write: No space left on device; "
            + "free some disk space (`hprune cache gc` removes what recent runs do not use)")
        #expect(StoreError.busy(path: "/s").description.contains("/s"))
    }
}

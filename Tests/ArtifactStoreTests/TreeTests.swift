// Trees: storing a directory, its canonical JSON (pinned), materializing it, and the symlink rules.
import Foundation
import Testing
@testable import ArtifactStore

@Suite struct TreeTests {
    /// A small directory: nested files, an executable, an empty file and a name needing JSON escaping.
    func makeSample(in dir: TempDir) throws -> URL {
        let src = dir.sub("src")
        try write("alpha\n", to: src.appendingPathComponent("a.txt"))
        try write("#!/bin/sh\necho hi\n", to: src.appendingPathComponent("bin/run.sh"))
        chmod(src.appendingPathComponent("bin/run.sh").path, 0o755)
        try write("", to: src.appendingPathComponent("deep/er/empty"))
        try write("quote", to: src.appendingPathComponent("we\"ird name.txt"))
        try FileManager.default.createDirectory(at: src.appendingPathComponent("empty-dir"), withIntermediateDirectories: true)
        return src
    }

    @Test func canonicalJSONIsPinned() throws {
        let a = Digest.of(Data("alpha\n".utf8)), e = Digest.of(Data())
        let tree = Tree(entries: [
            Tree.Entry(path: "z/\"q\"\n", digest: e, size: 0, executable: true),
            Tree.Entry(path: "a.txt", digest: a, size: 6, executable: false),
        ])
        let expected = "{\"entries\":[{\"digest\":\"\(a.hex)\",\"executable\":false,\"path\":\"a.txt\",\"size\":6},"
            + "{\"digest\":\"\(e.hex)\",\"executable\":true,\"path\":\"z/\\\"q\\\"\\u000a\",\"size\":0}]}"
        #expect(String(decoding: tree.canonicalJSON(), as: UTF8.self) == expected)
        #expect(tree.digest == Digest.of(Data(expected.utf8)))
        #expect(tree.digest.hex == "690dcb16a4469db91c941be98cdce007c49e545d23efa9028721038bd713e038")
        // Its JSON decodes back to the same tree.
        #expect(try JSONDecoder().decode(Tree.self, from: tree.canonicalJSON()) == tree)
    }

    @Test func putTreeAndMaterialize() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.sub("store"))
        let src = try makeSample(in: dir)
        let digest = try store.putTree(src)
        let tree = try store.readTree(digest)
        #expect(tree.entries.map(\.path) == ["a.txt", "bin/run.sh", "deep/er/empty", "we\"ird name.txt"])
        #expect(tree.entries.map(\.executable) == [false, true, false, false])
        #expect(tree.entries[0].size == 6)
        #expect(try store.putTree(src) == digest, "putTree is deterministic")
        // Same digest as hashing the directory as a source.
        #expect(try store.hashSource(at: src) == digest)

        let out = dir.sub("out")
        try store.materializeTree(digest, into: out)
        #expect(try String(contentsOf: out.appendingPathComponent("a.txt"), encoding: .utf8) == "alpha\n")
        #expect(FileManager.default.isExecutableFile(atPath: out.appendingPathComponent("bin/run.sh").path))
        let attrs = try FileManager.default.attributesOfItem(atPath: out.appendingPathComponent("a.txt").path)
        #expect(attrs[.posixPermissions] as? Int == 0o444)
        #expect(attrs[.referenceCount] as? Int == 2, "plain files are hard links to the object")
        // Materializing again into the same non-empty folder is refused; a copy elsewhere works.
        #expect(throws: StoreError.destinationNotEmpty(path: out.path)) { try store.materializeTree(digest, into: out) }
        let copied = dir.sub("copied")
        try store.materializeTree(digest, into: copied, copy: true)
        let copiedAttrs = try FileManager.default.attributesOfItem(atPath: copied.appendingPathComponent("a.txt").path)
        #expect(copiedAttrs[.referenceCount] as? Int == 1)
        #expect(try store.putTree(copied) == digest)
    }

    @Test func symlinkInsideIsFollowedOutsideRefused() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.sub("store"))
        let src = try makeSample(in: dir)
        try FileManager.default.createSymbolicLink(atPath: src.appendingPathComponent("alias.txt").path,
                                                   withDestinationPath: "a.txt")
        let digest = try store.putTree(src)
        let alias = try #require(try store.readTree(digest).entries.first { $0.path == "alias.txt" })
        #expect(alias.digest == Digest.of(Data("alpha\n".utf8)))

        try write("secret", to: dir.sub("outside.txt"))
        let link = src.appendingPathComponent("leak.txt")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: "../outside.txt")
        #expect {
            try store.putTree(src)
        } throws: { error in
            guard case StoreError.symlinkEscapes(let l, _, _) = error else { return false }
            return l.hasSuffix("leak.txt")
        }
        // A source directory may link anywhere (model caches link into blob folders).
        _ = try store.hashSource(at: src)
    }

    @Test func symlinkLoopIsAnError() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.sub("store"))
        let src = try makeSample(in: dir)
        try FileManager.default.createSymbolicLink(atPath: src.appendingPathComponent("deep/er/up").path,
                                                   withDestinationPath: "../..")
        #expect {
            try store.putTree(src)
        } throws: { error in
            if case StoreError.symlinkLoop = error { return true }
            return false
        }
    }

    @Test func treeWithUnsafePathIsRejected() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let blob = try store.put(Data("x".utf8))
        for bad in ["../escape", "/abs", "a//b", "a/./b", ""] {
            let json = "{\"entries\":[{\"digest\":\"\(blob.hex)\",\"executable\":false,\"path\":\"\(bad)\",\"size\":1}]}"
            let digest = try store.put(Data(json.utf8))
            #expect(throws: (any Error).self, "path '\(bad)'") { try store.readTree(digest) }
            #expect(throws: (any Error).self) { try store.materializeTree(digest, into: dir.sub("m")) }
        }
        #expect(!FileManager.default.fileExists(atPath: dir.sub("escape").path))
        let notATree = try store.put(Data("not json".utf8))
        #expect {
            try store.readTree(notATree)
        } throws: { error in
            if case StoreError.invalidTree(notATree, _) = error { return true }
            return false
        }
    }

    @Test func materializeNoticesAMissingFileObject() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.sub("store"))
        let src = try makeSample(in: dir)
        let digest = try store.putTree(src)
        let a = Digest.of(Data("alpha\n".utf8))
        try FileManager.default.removeItem(at: store.path(of: a))
        #expect(throws: StoreError.missing(a, path: store.path(of: a).path)) {
            try store.materializeTree(digest, into: dir.sub("out"))
        }
    }
}

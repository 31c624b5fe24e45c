// Source hashing: a file is read once; it is read again only when its path, size, mtime or inode change.
import Foundation
import Testing
@testable import ArtifactStore

@Suite struct SourceHashTests {
    /// A job's store (`writesLedger: false`) uses the driver's memos but adds none, so only the driver writes.
    @Test func aStoreThatDoesNotWriteTheLedgerReadsMemosAndAddsNone() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let known = dir.sub("known.bin"), fresh = dir.sub("fresh.bin")
        try write("hashed by the driver", to: known)
        try write("first seen by a job", to: fresh)
        try setModified(known, secondsAgo: 3600)
        try setModified(fresh, secondsAgo: 3600)
        let driver = try ArtifactStore(root: dir.sub("store"))
        _ = try driver.hashSource(at: known)

        let job = try ArtifactStore(root: dir.sub("store"), writesLedger: false)
        #expect(try job.hashSource(at: known) == Digest.of(Data("hashed by the driver".utf8)))
        #expect(job.sourceFilesHashed == 0, "the driver's memo is read")
        #expect(try job.hashSource(at: fresh) == Digest.of(Data("first seen by a job".utf8)))
        #expect(try job.hashSource(at: fresh) == Digest.of(Data("first seen by a job".utf8)))
        #expect(job.sourceFilesHashed == 2, "nothing was remembered")
        let later = try ArtifactStore(root: dir.sub("store"))
        _ = try later.hashSource(at: fresh)
        #expect(later.sourceFilesHashed == 1, "the job wrote no memo")
    }

    @Test func unchangedFileIsNotRehashedChangedFileIs() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let file = dir.sub("weights.bin")
        try write("version one", to: file)
        try setModified(file, secondsAgo: 3600)

        let store = try ArtifactStore(root: dir.sub("store"))
        let first = try store.hashSource(at: file)
        #expect(first == Digest.of(Data("version one".utf8)))
        #expect(store.sourceFilesHashed == 1)
        #expect(try store.hashSource(at: file) == first)
        #expect(store.sourceFilesHashed == 1, "unchanged file must come from the ledger")

        // Remembered across processes: a new store instance reads the ledger.
        let reopened = try ArtifactStore(root: dir.sub("store"))
        #expect(try reopened.hashSource(at: file) == first)
        #expect(reopened.sourceFilesHashed == 0)
        #expect(!store.contains(first), "hashing a source copies nothing into the store")

        // Same size, new mtime → rehash.
        try write("version two", to: file)
        try setModified(file, secondsAgo: 1800)
        let second = try reopened.hashSource(at: file)
        #expect(second == Digest.of(Data("version two".utf8)))
        #expect(reopened.sourceFilesHashed == 1)

        // Same size and mtime but a new inode (file replaced by rename) → rehash.
        let replacement = dir.sub("replacement.bin")
        try write("version 333", to: replacement)
        let mtime = try FileManager.default.attributesOfItem(atPath: file.path)[.modificationDate] as! Date
        try FileManager.default.setAttributes([.modificationDate: mtime], ofItemAtPath: replacement.path)
        #expect(rename(replacement.path, file.path) == 0)
        #expect(try reopened.hashSource(at: file) == Digest.of(Data("version 333".utf8)))
        #expect(reopened.sourceFilesHashed == 2)
        #expect(try reopened.hashSource(at: file) == Digest.of(Data("version 333".utf8)))
        #expect(reopened.sourceFilesHashed == 2)
    }

    @Test func justWrittenFileIsNotRemembered() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let file = dir.sub("fresh.bin")
        try write("still being written?", to: file)
        let store = try ArtifactStore(root: dir.sub("store"))
        _ = try store.hashSource(at: file)
        _ = try store.hashSource(at: file)
        #expect(store.sourceFilesHashed == 2, "a file modified in the last 2 s may change within its mtime tick")
    }

    @Test func directoryIsHashedPerFile() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let model = dir.sub("model")
        for (name, text) in [("config.json", "{}"), ("a.safetensors", "AAAA"), ("sub/b.safetensors", "BBBB")] {
            try write(text, to: model.appendingPathComponent(name))
            try setModified(model.appendingPathComponent(name), secondsAgo: 600)
        }
        let store = try ArtifactStore(root: dir.sub("store"))
        let digest = try store.hashSource(at: model)
        #expect(store.sourceFilesHashed == 3)
        #expect(try store.hashSource(at: model) == digest)
        #expect(store.sourceFilesHashed == 3)
        try write("CCCC", to: model.appendingPathComponent("sub/b.safetensors"))
        try setModified(model.appendingPathComponent("sub/b.safetensors"), secondsAgo: 300)
        #expect(try store.hashSource(at: model) != digest)
        #expect(store.sourceFilesHashed == 4, "only the changed file is read again")
        // Reached through a symlink, the same file is remembered under its real path.
        let link = dir.sub("link-to-model")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: model)
        _ = try store.hashSource(at: link)
        #expect(store.sourceFilesHashed == 4)
    }

    @Test func missingSourceIsAnErrorNamingIt() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.sub("store"))
        let missing = dir.sub("nope.bin")
        #expect(throws: StoreError.io(path: missing.path, operation: "open source", code: ENOENT)) {
            try store.hashSource(at: missing)
        }
    }
}

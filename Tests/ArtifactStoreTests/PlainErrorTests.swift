// Foundation's file errors as plain text: the path and the reason, never the NSCocoaErrorDomain dump.
import Foundation
import Testing
@testable import ArtifactStore

@Suite struct PlainErrorTests {
    @Test func realFoundationErrorsNameThePathAndTheReason() throws {
        let dir = try TempDir("plain")
        defer { dir.remove() }
        let file = dir.path + "/plain.txt"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        do {
            try FileManager.default.createDirectory(atPath: file + "/a/b", withIntermediateDirectories: true)
            Issue.record("creating a folder under a file succeeded")
        } catch {
            let text = PlainError.describe(error)
            #expect(text.contains(file) && (text.contains("is a file, not a folder") || text.contains("Not a directory")), "\(text)")
            #expect(!text.contains("Domain="), "\(text)")
        }
        do {
            _ = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/missing"))
            Issue.record("reading a missing file succeeded")
        } catch {
            let text = PlainError.describe(error)
            #expect(text.contains(dir.path + "/missing") && !text.contains("Domain="), "\(text)")
        }
        #expect(PlainError.describe(CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: "/x"])) == "/x: permission denied")
        #expect(PlainError.describe(StoreError.invalidKey("k")) == "\(StoreError.invalidKey("k"))")
    }
}

// StoreError: every way the artifact store or the ledger can fail, each carrying the path or digest involved
// and saying how to fix it. StoreWarning: what the store repaired by itself (evicted records), never fatal.
import Foundation

/// An error from the artifact store or the run ledger. Each case names the file or digest involved.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A system call failed on `path` (`operation` is what was attempted, `code` the errno).
    case io(path: String, operation: String, code: Int32)
    /// The object is not in the store.
    case missing(Digest, path: String)
    /// The object's bytes do not hash to its digest; it has been removed from the store.
    case corrupt(Digest, path: String)
    /// A file of a kind the store cannot hold (fifo, socket, device), or not a regular file where one is needed.
    case unsupportedFile(path: String, reason: String)
    /// A symbolic link inside a directory being stored points outside that directory.
    case symlinkEscapes(link: String, target: String, root: String)
    /// A directory links back into itself through symbolic links.
    case symlinkLoop(path: String)
    /// A tree object that cannot be decoded or names an unsafe path.
    case invalidTree(Digest, reason: String)
    /// An action key with characters that cannot name a file.
    case invalidKey(String)
    /// The destination of `materializeTree` already exists and is not an empty directory.
    case destinationNotEmpty(path: String)
    /// Another process holds the store, so an operation that needs it alone (gc) cannot run.
    case busy(path: String)
    /// The SQLite ledger failed.
    case ledger(path: String, message: String)
    /// No run id starts with this prefix.
    case runNotFound(String)
    /// Several run ids start with this prefix.
    case ambiguousRun(String, matches: [String])

    public var description: String {
        switch self {
        case let .io(path, operation, code):
            let reason = String(cString: strerror(code))
            var hint = ""
            switch code {
            case ENOSPC: hint = "; free some disk space (`hprune cache gc` removes what recent runs do not use)"
            case EACCES, EPERM, EROFS: hint = "; check the permissions of the store (--store / HPRUNE_STORE)"
            default: break
            }
            return "\(path): error: cannot \(operation): \(reason)\(hint)"
        case let .missing(digest, path):
            return "\(path): error: object \(digest.short) is not in the store; re-run the stage that makes it "
                + "(`hprune run` does so when its action record is gone; `hprune cache verify` removes stale records)"
        case let .corrupt(digest, path):
            return "\(path): error: object \(digest.short) does not match its digest and was removed from the store; "
                + "re-run the stage that made it (`hprune run` re-runs it) and run `hprune cache verify` to check the rest"
        case let .unsupportedFile(path, reason):
            return "\(path): error: cannot store this file: \(reason); only regular files and directories can be stored"
        case let .symlinkEscapes(link, target, root):
            return "\(link): error: symbolic link points outside \(root) (to \(target)); "
                + "copy the file into the directory instead of linking to it"
        case let .symlinkLoop(path):
            return "\(path): error: symbolic links form a loop; remove the link that points back into its own parent"
        case let .invalidTree(digest, reason):
            return "tree \(digest.short): error: \(reason); run `hprune cache verify` and re-run the stage that made it"
        case let .invalidKey(key):
            return "error: action key '\(key.prefix(80))' must be 2–128 characters of [A-Za-z0-9._-] not starting with '.'"
        case let .destinationNotEmpty(path):
            return "\(path): error: destination exists and is not an empty directory; remove it or choose another"
        case let .busy(path):
            return "\(path): error: another hprune process is using this store; run `hprune cache gc` when it has finished"
        case let .ledger(path, message):
            return "\(path): error: run ledger: \(message); if the file is damaged, move it aside "
                + "(a new ledger is created, the cached objects stay usable)"
        case let .runNotFound(prefix):
            return "error: no run id starts with '\(prefix)'; `hprune runs` lists them"
        case let .ambiguousRun(prefix, matches):
            return "error: run id prefix '\(prefix)' is ambiguous: it matches \(matches.prefix(5).joined(separator: ", "))"
                + (matches.count > 5 ? " and \(matches.count - 5) more" : "") + "; type more of the id"
        }
    }
}

/// Something the store found wrong and repaired by itself (an evicted record or object). Never fatal.
public struct StoreWarning: Sendable, Equatable, CustomStringConvertible {
    /// The file that was wrong (already removed).
    public let path: String
    /// What was wrong and what happens next.
    public let message: String

    public var description: String { "\(path): warning: \(message)" }
}

extension StoreError: LocalizedError {
    /// The same text as `description`, so `localizedDescription` shows the path and the fix.
    public var errorDescription: String? { description }
}

// Foundation's file errors printed for people: `/x/file/out: Not a directory` instead of the raw
// `Error Domain=NSCocoaErrorDomain Code=512 "(null)" UserInfo={…}` dump. Every CLI message and stage failure
// that quotes an error it did not make itself goes through `PlainError.describe`.
import Foundation

/// Plain one-line descriptions of errors.
public enum PlainError {
    /// `error` as one line: Cocoa and POSIX errors as `path: reason` (the reason from the underlying errno when
    /// there is one), every other error as its own description.
    ///
    ///     PlainError.describe(CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: "/x"]))
    ///     // "/x: permission denied"
    public static func describe(_ error: any Error) -> String {
        let ns = error as NSError
        guard ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain else { return "\(error)" }
        let path = (ns.userInfo[NSFilePathErrorKey] as? String)
            ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
        var reason: String?
        if ns.domain == NSPOSIXErrorDomain {
            reason = String(cString: strerror(Int32(ns.code)))
        } else if let under = ns.userInfo[NSUnderlyingErrorKey] as? NSError, under.domain == NSPOSIXErrorDomain {
            reason = String(cString: strerror(Int32(under.code)))
        } else {
            reason = cocoaReason(ns.code) ?? path.flatMap(pathProblem)
        }
        let text = reason ?? "file operation failed (code \(ns.code))"
        return path.map { "\($0): \(text)" } ?? text
    }

    /// Why `path` cannot be created, found by walking it: a regular file where a folder is needed, or a folder
    /// that cannot be written (Foundation on Linux often reports only "code 512").
    static func pathProblem(_ path: String) -> String? {
        var prefix = ""
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        for (i, part) in parts.enumerated() {
            let parent = prefix.isEmpty ? "/" : prefix
            prefix += "/" + part
            var st = stat()
            guard stat(prefix, &st) == 0 else {
                return access(parent, W_OK) == 0 ? nil : "cannot write in \(parent) (permission denied)"
            }
            if (st.st_mode & S_IFMT) != S_IFDIR && i < parts.count - 1 { return "\(prefix) is a file, not a folder" }
        }
        return nil
    }

    private static func cocoaReason(_ code: Int) -> String? {
        switch CocoaError.Code(rawValue: code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or directory"
        case .fileWriteFileExists: return "already exists"
        case .fileReadNoPermission, .fileWriteNoPermission: return "permission denied"
        case .fileWriteOutOfSpace: return "no space left on the device"
        case .fileWriteVolumeReadOnly: return "read-only file system"
        case .fileReadCorruptFile: return "the file is damaged or not in the expected format"
        case .fileReadTooLarge: return "the file is too large"
        case .fileReadInvalidFileName, .fileWriteInvalidFileName: return "invalid file name"
        case .fileReadUnknownStringEncoding, .fileReadInapplicableStringEncoding: return "the file is not valid text"
        default: return nil
        }
    }
}

// Preparing the folder an output goes into (`export --out`, `quantise --out`): its missing parents are created
// one by one, so a path under a regular file or an unwritable folder is reported plainly, naming the part of the
// path that is in the way, instead of as a raw Foundation error.
import ArtifactStore
import Foundation

/// The parent folders of output paths.
public enum OutputFolder {
    /// Creates the missing folders above `target` (which itself is left alone).
    ///
    /// - Throws: `ModelStoreError` naming the component in the way (callers name `target`): a regular file where a folder
    ///   is needed, or a folder that cannot be written.
    public static func createParents(of target: URL) throws {
        let parent = target.standardizedFileURL.deletingLastPathComponent().path
        var path = ""
        for part in parent.split(separator: "/", omittingEmptySubsequences: true) {
            path += "/" + part
            var st = stat()
            if stat(path, &st) == 0 {
                guard (st.st_mode & S_IFMT) == S_IFDIR else {
                    throw ModelStoreError("\(path) is a file, not a folder",
                                          fix: "choose an output path whose parent folders are folders, or move \(path) away")
                }
                continue
            }
            if mkdir(path, 0o755) != 0 && errno != EEXIST {
                let why = String(cString: strerror(errno))
                throw ModelStoreError("cannot create the folder \(path) (\(why))",
                                      fix: "check that \((path as NSString).deletingLastPathComponent) is writable, or choose another output path")
            }
        }
    }

    /// Creates one fresh folder (a temp folder beside the target), reporting failure plainly.
    public static func createFolder(_ url: URL, for target: URL) throws {
        if mkdir(url.path, 0o755) != 0 {
            let why = String(cString: strerror(errno))
            throw ModelStoreError("cannot write in \(url.deletingLastPathComponent().path) (\(why))",
                                  fix: "check write permission on \(url.deletingLastPathComponent().path), or choose another output path")
        }
    }
}

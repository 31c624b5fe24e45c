// Where tensor bytes live. A backend owns its storage kind: host backends use `HostStorage` (a 64-byte aligned
// heap buffer, or a read-only memory-mapped file region); a GPU backend adds its own `TensorStorage` class.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a storage's bytes are.
public enum Device: Hashable, Sendable, CustomStringConvertible {
    case host
    case cuda(Int)

    public var description: String {
        switch self {
        case .host: "host"
        case .cuda(let i): "cuda:\(i)"
        }
    }
}

/// The bytes behind one or more tensors.
public protocol TensorStorage: AnyObject, Sendable {
    var device: Device { get }
    var byteCount: Int { get }
    /// True for memory-mapped weights: in-place ops on them throw.
    var isReadOnly: Bool { get }
}

/// Host memory: an aligned heap buffer (zero-filled) or a read-only mapped file region.
///
/// Freed (or unmapped) when the last tensor referring to it goes away.
public final class HostStorage: TensorStorage, @unchecked Sendable {
    /// Alignment of heap buffers, in bytes (one cache line, one AVX-512 vector).
    public static let alignment = 64

    /// First byte of the storage.
    public let base: UnsafeMutableRawPointer
    public let byteCount: Int
    public let isReadOnly: Bool
    public var device: Device { .host }

    private enum Release { case free, unmap(UnsafeMutableRawPointer, Int) }
    private let release: Release

    /// Allocates `byteCount` zeroed bytes aligned to `HostStorage.alignment`.
    public init(byteCount: Int) throws {
        var p: UnsafeMutableRawPointer? = nil
        let n = max(byteCount, 1)
        guard posix_memalign(&p, HostStorage.alignment, n) == 0, let p else {
            throw BackendError.outOfMemory(bytes: byteCount)
        }
        memset(p, 0, n)
        self.base = p
        self.byteCount = byteCount
        self.isReadOnly = false
        self.release = .free
    }

    /// Maps `length` bytes of the file at `path` starting at byte `offset`, read-only.
    ///
    /// The offset need not be page-aligned. Used for safetensors weights: the file stays on disk and pages
    /// are read on demand.
    public init(mapping path: String, offset: Int, length: Int) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw BackendError.mapFailed(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw BackendError.mapFailed(path: path, reason: String(cString: strerror(errno)))
        }
        guard offset >= 0, length >= 0, offset + length <= Int(st.st_size) else {
            throw BackendError.mapFailed(
                path: path,
                reason: "region [\(offset), \(offset + length)) lies outside the file (\(st.st_size) bytes)")
        }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        let mappedLength = max(offset - start + length, 1)
        let m = mmap(nil, mappedLength, PROT_READ, MAP_PRIVATE, fd, off_t(start))
        guard let m, m != MAP_FAILED else {
            throw BackendError.mapFailed(path: path, reason: String(cString: strerror(errno)))
        }
        self.base = m + (offset - start)
        self.byteCount = length
        self.isReadOnly = true
        self.release = .unmap(m, mappedLength)
    }

    deinit {
        switch release {
        case .free: free(base)
        case .unmap(let p, let n): munmap(p, n)
        }
    }
}

// Where tensor bytes live. A backend owns its storage kind: host backends use `HostStorage` (a 64-byte aligned
// heap buffer, or a read-only memory-mapped file region); a GPU backend adds its own `TensorStorage` class.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

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

    /// Allocates `byteCount` bytes aligned to `HostStorage.alignment`, zeroed unless `zeroed` is false
    /// (for outputs a kernel overwrites completely: skipping the memset saves a pass over memory).
    public init(byteCount: Int, zeroed: Bool = true) throws {
        var p: UnsafeMutableRawPointer? = HostBufferPool.shared.take(byteCount)
        let n = max(byteCount, 1)
        if p == nil {
            guard byteCount >= 0, posix_memalign(&p, HostStorage.alignment, HostBufferPool.roundedSize(n)) == 0 else {
                throw BackendError.outOfMemory(bytes: byteCount)
            }
        }
        guard let p else { throw BackendError.outOfMemory(bytes: byteCount) }
        if zeroed { memset(p, 0, n) }
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
        case .free: if !HostBufferPool.shared.give(base, byteCount) { free(base) }
        case .unmap(let p, let n): munmap(p, n)
        }
    }
}

/// Keeps large freed heap buffers (≥ 1 MiB) for reuse by the next allocation of the same rounded size, up to a
/// byte budget, oldest evicted first.
///
/// A forward pass allocates the same activation sizes block after block; without this each one comes from fresh
/// `mmap` pages that the kernel faults in and zeroes on first touch (about 10 % of a bf16 forward's time on
/// SD3-medium width). The budget is `HPRUNE_BUFFER_POOL_MB` (default 512; 0 turns recycling off).
public final class HostBufferPool: @unchecked Sendable {
    public static let shared = HostBufferPool(
        capacityBytes: (ProcessInfo.processInfo.environment["HPRUNE_BUFFER_POOL_MB"].flatMap { Int($0) } ?? 512) << 20)

    /// Buffers below this size go straight back to malloc (which recycles small blocks well itself).
    public static let minimumBytes = 1 << 20
    /// The most bytes kept.
    public let capacityBytes: Int
    private let lock = NSLock()
    private var entries: [(size: Int, pointer: UnsafeMutableRawPointer)] = []   // oldest first
    private var kept = 0

    public init(capacityBytes: Int) { self.capacityBytes = max(0, capacityBytes) }

    /// Allocation sizes are rounded up to whole pages so that near sizes share buffers.
    static func roundedSize(_ n: Int) -> Int { n < minimumBytes ? n : (n + 4095) & ~4095 }

    /// Bytes currently kept for reuse.
    public var keptBytes: Int { lock.withLock { kept } }

    /// A kept buffer of `byteCount`'s rounded size (most recently freed first), or nil.
    func take(_ byteCount: Int) -> UnsafeMutableRawPointer? {
        guard byteCount >= Self.minimumBytes, capacityBytes > 0 else { return nil }
        let size = Self.roundedSize(byteCount)
        return lock.withLock {
            guard let i = entries.lastIndex(where: { $0.size == size }) else { return nil }
            kept -= size
            return entries.remove(at: i).pointer
        }
    }

    /// Keeps `pointer` (allocated with `byteCount`'s rounded size) for reuse; false when the caller must free it.
    func give(_ pointer: UnsafeMutableRawPointer, _ byteCount: Int) -> Bool {
        guard byteCount >= Self.minimumBytes else { return false }
        let size = Self.roundedSize(byteCount)
        guard size <= capacityBytes else { return false }
        var evicted: [UnsafeMutableRawPointer] = []
        lock.withLock {
            while kept + size > capacityBytes, !entries.isEmpty {
                let e = entries.removeFirst()
                kept -= e.size
                evicted.append(e.pointer)
            }
            entries.append((size, pointer))
            kept += size
        }
        for p in evicted { free(p) }
        return true
    }

    /// Frees every kept buffer.
    public func drain() {
        let all = lock.withLock { () -> [UnsafeMutableRawPointer] in
            defer { entries.removeAll(); kept = 0 }
            return entries.map(\.pointer)
        }
        for p in all { free(p) }
    }
}

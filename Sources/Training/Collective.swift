// The collectives data-parallel training needs, behind one protocol: all-gather (every rank's bytes to every
// rank, in rank order), broadcast, barrier, abort. `SingleProcess` is the one-rank world (all-gather is a copy);
// `MPICollective` (MPICollective.swift) is Open MPI loaded at run time. Nothing here reduces: the caller sums the
// gathered parts itself in a fixed order, which is what makes results independent of the rank count.

import Foundation

/// A group of processes (ranks 0..<size) that exchange bytes. Calls are collective: every rank makes the same
/// calls in the same order with the same lengths, one call at a time (no two threads call at once).
public protocol Collective: AnyObject, Sendable {
    /// This process's rank, 0..<size.
    var rank: Int { get }
    var size: Int { get }
    /// For logs: "one process", "Open MPI v4.1.4, 2 ranks".
    var description: String { get }
    /// Every rank passes `send` (the same byte count on every rank); `receive` (size × send.count bytes) gets rank
    /// r's bytes at offset r × send.count.
    func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws
    /// Rank `root`'s `buffer` is copied into every rank's `buffer` (the same byte count on every rank).
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    /// `broadcast` for a rank that may wait long (hours, while rank 0 runs other stages): it sleeps `poll`
    /// between checks instead of spinning a core.
    func patientBroadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int, poll: Duration) throws
    /// Returns when every rank has called it.
    func barrier() throws
    /// Ends every rank of the group now (a rank that cannot go on must not leave the others waiting).
    func abort(code: Int32) -> Never
}

/// A collective failed (the MPI error text), or the ranks disagree about something they must share.
public struct CollectiveError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The one-rank world: every collective is a local copy.
public final class SingleProcess: Collective {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var description: String { "one process" }
    public func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws {
        precondition(receive.count == send.count, "allGather: the receive buffer must hold size × send bytes")
        if let d = receive.baseAddress, let s = send.baseAddress { d.copyMemory(from: s, byteCount: send.count) }
    }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        precondition(root == 0, "broadcast: root \(root) of a one-rank world")
    }
    public func patientBroadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int, poll: Duration) throws {
        try broadcast(buffer, root: root)
    }
    public func barrier() throws {}
    public func abort(code: Int32) -> Never { exit(code) }
}

extension Collective {
    /// `value` of every rank, in rank order.
    public func allGather<T: BitwiseCopyable>(_ value: T) throws -> [T] {
        var v = value
        var out = [T](unsafeUninitializedCapacity: size) { _, n in n = size }
        try withUnsafeBytes(of: &v) { s in
            try out.withUnsafeMutableBytes { r in try allGather(UnsafeRawBufferPointer(s), into: r) }
        }
        return out
    }

    /// Rank `root`'s bytes on every rank; the length travels first, so other ranks may pass anything.
    public func broadcast(_ bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        var count = Int64(bytes.count)
        try withUnsafeMutableBytes(of: &count) { try broadcast($0, root: root) }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        try out.withUnsafeMutableBytes { try broadcast($0, root: root) }
        return out
    }
}

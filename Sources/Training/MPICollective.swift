// Open MPI loaded at run time (dlopen libmpi.so.40, then libmpi.so): builds and tests need no MPI, and a run that
// asks for ranks without it gets an error naming the Debian packages. Only the few calls data parallelism uses are
// bound. Open MPI's handles (MPI_COMM_WORLD, MPI_BYTE) are the addresses of its global objects
// (`ompi_mpi_comm_world`, `ompi_mpi_byte`), so they are found with dlsym too; MPICH's integer handles are a
// different ABI and are refused by name.

#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Whether this process was started by an MPI launcher (mpirun / mpiexec / srun with PMI), and as how many ranks.
public enum MPILaunch {
    /// The world size the launcher announced: `OMPI_COMM_WORLD_SIZE` (mpirun), `PMI_SIZE` (PMI-1/2),
    /// `SLURM_STEP_NUM_TASKS` beside `PMIX_RANK` (srun --mpi=pmix); nil when none says so. A Slurm batch script's
    /// own `SLURM_NTASKS` does not count: that process is not a rank.
    public static func worldSize(_ env: [String: String] = ProcessInfo.processInfo.environment) -> Int? {
        if let s = env["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init) { return s }
        if let s = env["PMI_SIZE"].flatMap(Int.init) { return s }
        if env["PMIX_RANK"] != nil, let s = env["SLURM_STEP_NUM_TASKS"].flatMap(Int.init) { return s }
        return nil
    }

    /// Ranks of this job on this host (for the per-rank thread count).
    public static func localSize(_ env: [String: String] = ProcessInfo.processInfo.environment) -> Int? {
        env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? env["MPI_LOCALNRANKS"].flatMap(Int.init)
            ?? env["SLURM_STEP_TASKS_PER_NODE"].flatMap { Int($0.prefix { $0.isNumber }) }
    }

    /// What to install when MPI is missing.
    public static let installHint = "install Open MPI (Debian/Ubuntu: `apt-get install openmpi-bin libopenmpi-dev`, which provide mpirun and libmpi.so.40)"
}

/// MPI_COMM_WORLD of Open MPI, bound with dlsym. Initialised once per process (`shared()`); finalised at exit.
public final class MPICollective: Collective, @unchecked Sendable {
    private typealias InitThreadFn = @convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?, Int32, UnsafeMutablePointer<Int32>) -> Int32
    private typealias FlagFn = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    private typealias CommIntFn = @convention(c) (UnsafeMutableRawPointer, UnsafeMutablePointer<Int32>) -> Int32
    private typealias AllgatherFn = @convention(c) (UnsafeRawPointer?, Int32, UnsafeMutableRawPointer, UnsafeMutableRawPointer?, Int32, UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Int32
    private typealias BcastFn = @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafeMutableRawPointer, Int32, UnsafeMutableRawPointer) -> Int32
    private typealias CommFn = @convention(c) (UnsafeMutableRawPointer) -> Int32
    private typealias AbortFn = @convention(c) (UnsafeMutableRawPointer, Int32) -> Int32
    private typealias IbcastFn = @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafeMutableRawPointer, Int32, UnsafeMutableRawPointer, UnsafeMutablePointer<UnsafeMutableRawPointer?>) -> Int32
    private typealias TestFn = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, UnsafeMutablePointer<Int32>, UnsafeMutableRawPointer?) -> Int32
    private typealias VoidFn = @convention(c) () -> Int32
    private typealias VersionFn = @convention(c) (UnsafeMutablePointer<CChar>, UnsafeMutablePointer<Int32>) -> Int32
    private typealias ErrorStringFn = @convention(c) (Int32, UnsafeMutablePointer<CChar>, UnsafeMutablePointer<Int32>) -> Int32

    /// MPI_THREAD_SERIALIZED (mpi.h: SINGLE 0, FUNNELED 1, SERIALIZED 2, MULTIPLE 3): any thread may call, one at a time.
    static let threadSerialized: Int32 = 2

    public let rank: Int
    public let size: Int
    public let description: String
    /// The library that was opened.
    public let libraryPath: String

    private let comm: UnsafeMutableRawPointer
    private let byte: UnsafeMutableRawPointer
    private let allgatherFn: AllgatherFn
    private let bcastFn: BcastFn
    private let barrierFn: CommFn
    private let abortFn: AbortFn
    private let ibcastFn: IbcastFn
    private let testFn: TestFn
    private let finalizeFn: VoidFn
    private let errorStringFn: ErrorStringFn?

    /// The largest byte count one call passes (MPI counts are `int`); longer buffers go in pieces.
    static let maxChunk = 1 << 30

    private static let lock = NSLock()
    nonisolated(unsafe) private static var instance: Result<MPICollective, CollectiveError>?

    /// MPI_COMM_WORLD of this process, initialising MPI on first use (MPI_Init_thread, SERIALIZED).
    /// - Throws: `CollectiveError` naming the library to install when libmpi cannot be loaded, or MPI's error.
    public static func shared() throws -> MPICollective {
        try lock.withLock {
            if let instance { return try instance.get() }
            let r: Result<MPICollective, CollectiveError>
            do { r = .success(try MPICollective()) } catch let e as CollectiveError { r = .failure(e) } catch {
                r = .failure(CollectiveError("\(error)"))
            }
            instance = r
            if case .success = r { atexit { MPICollective.finalizeAtExit() } }
            return try r.get()
        }
    }

    /// Whether libmpi can be opened here (no initialisation).
    public static func libraryAvailable() -> Bool {
        for name in libraryNames {
            if let h = dlopen(name, RTLD_LAZY | RTLD_LOCAL) { dlclose(h); return true }
        }
        return false
    }

    static let libraryNames = ["libmpi.so.40", "libmpi.so"]

    private init() throws {
        var handle: UnsafeMutableRawPointer?
        var opened = ""
        var lastError = ""
        // RTLD_GLOBAL: Open MPI's components (dlopen'ed by libmpi itself) resolve symbols of libmpi / libopen-pal.
        for name in Self.libraryNames {
            if let h = dlopen(name, RTLD_NOW | RTLD_GLOBAL) { handle = h; opened = name; break }
            if let e = dlerror() { lastError = String(cString: e) }
        }
        guard let handle else {
            throw CollectiveError("cannot load the MPI library (tried \(Self.libraryNames.joined(separator: ", ")): \(lastError)); \(MPILaunch.installHint)")
        }
        func sym<T>(_ name: String, _: T.Type) throws -> T {
            guard let p = dlsym(handle, name) else {
                throw CollectiveError("\(opened) has no symbol '\(name)'; hprune needs Open MPI ≥ 3 (MPICH's ABI is not supported); \(MPILaunch.installHint)")
            }
            return unsafeBitCast(p, to: T.self)
        }
        guard let world = dlsym(handle, "ompi_mpi_comm_world"), let byte = dlsym(handle, "ompi_mpi_byte") else {
            throw CollectiveError("\(opened) is not Open MPI (no ompi_mpi_comm_world / ompi_mpi_byte: MPICH's integer handles are a different ABI); \(MPILaunch.installHint)")
        }
        comm = world
        self.byte = byte
        libraryPath = opened
        let initThread = try sym("MPI_Init_thread", InitThreadFn.self)
        let initialized = try sym("MPI_Initialized", FlagFn.self)
        let commRank = try sym("MPI_Comm_rank", CommIntFn.self)
        let commSize = try sym("MPI_Comm_size", CommIntFn.self)
        allgatherFn = try sym("MPI_Allgather", AllgatherFn.self)
        bcastFn = try sym("MPI_Bcast", BcastFn.self)
        barrierFn = try sym("MPI_Barrier", CommFn.self)
        abortFn = try sym("MPI_Abort", AbortFn.self)
        ibcastFn = try sym("MPI_Ibcast", IbcastFn.self)
        testFn = try sym("MPI_Test", TestFn.self)
        finalizeFn = try sym("MPI_Finalize", VoidFn.self)
        errorStringFn = dlsym(handle, "MPI_Error_string").map { unsafeBitCast($0, to: ErrorStringFn.self) }

        var already: Int32 = 0
        _ = initialized(&already)
        if already == 0 {
            var provided: Int32 = 0
            let rc = initThread(nil, nil, Self.threadSerialized, &provided)
            guard rc == 0 else { throw CollectiveError("MPI_Init_thread failed (error \(rc))") }
            guard provided >= Self.threadSerialized else {
                throw CollectiveError("this MPI provides thread level \(provided), hprune needs MPI_THREAD_SERIALIZED (2)")
            }
        }
        var r: Int32 = 0, s: Int32 = 0
        guard commRank(world, &r) == 0, commSize(world, &s) == 0 else { throw CollectiveError("MPI_Comm_rank/size failed") }
        rank = Int(r)
        size = Int(s)
        var version = ""
        if let v = dlsym(handle, "MPI_Get_library_version").map({ unsafeBitCast($0, to: VersionFn.self) }) {
            var buf = [CChar](repeating: 0, count: 8192)
            var len: Int32 = 0
            if v(&buf, &len) == 0 { version = Self.text(buf).split(separator: ",").first.map(String.init) ?? "" }
        }
        description = "\(version.isEmpty ? "MPI" : version) (\(opened)), \(size) rank\(size == 1 ? "" : "s")"
    }

    /// A NUL-terminated C string in `buf`.
    private static func text(_ buf: [CChar]) -> String {
        String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func finalizeAtExit() {
        lock.withLock {
            if case .success(let m)? = instance { _ = m.finalizeFn() }
            instance = nil
        }
    }

    /// Finalises MPI now (before a normal exit); collectives are unusable afterwards.
    public static func finalize() { finalizeAtExit() }

    private func check(_ rc: Int32, _ what: String) throws {
        guard rc != 0 else { return }
        var text = ""
        if let f = errorStringFn {
            var buf = [CChar](repeating: 0, count: 1024)
            var len: Int32 = 0
            if f(rc, &buf, &len) == 0 { text = ": " + Self.text(buf) }
        }
        throw CollectiveError("\(what) failed on rank \(rank) of \(size) (MPI error \(rc)\(text))")
    }

    public func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) throws {
        let n = send.count
        precondition(receive.count == n * size, "allGather: the receive buffer must hold size × send bytes")
        guard n > 0, let recv = receive.baseAddress else { return }
        if n <= Self.maxChunk {
            try check(allgatherFn(send.baseAddress, Int32(n), byte, recv, Int32(n), byte, comm), "MPI_Allgather")
            return
        }
        // Pieces of ≤ 1 GiB per rank: gather piece k of every rank, then put each where it belongs.
        let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.maxChunk * size, alignment: 16)
        defer { piece.deallocate() }
        var offset = 0
        while offset < n {
            let len = min(Self.maxChunk, n - offset)
            try check(allgatherFn(send.baseAddress! + offset, Int32(len), byte, piece.baseAddress!, Int32(len), byte, comm), "MPI_Allgather")
            for r in 0..<size { (recv + r * n + offset).copyMemory(from: piece.baseAddress! + r * len, byteCount: len) }
            offset += len
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        var offset = 0
        while offset < buffer.count {
            let len = min(Self.maxChunk, buffer.count - offset)
            try check(bcastFn(buffer.baseAddress! + offset, Int32(len), byte, Int32(root), comm), "MPI_Bcast")
            offset += len
        }
    }

    /// MPI_Ibcast, then MPI_Test every `poll` until it completes (MPI_STATUS_IGNORE is NULL in Open MPI).
    public func patientBroadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int, poll: Duration) throws {
        precondition(buffer.count <= Self.maxChunk, "patientBroadcast: at most \(Self.maxChunk) bytes")
        var request: UnsafeMutableRawPointer?
        try check(ibcastFn(buffer.baseAddress, Int32(buffer.count), byte, Int32(root), comm, &request), "MPI_Ibcast")
        var done: Int32 = 0
        let micros = UInt32(clamping: poll.components.seconds * 1_000_000 + poll.components.attoseconds / 1_000_000_000_000)
        while true {
            try check(testFn(&request, &done, nil), "MPI_Test")
            if done != 0 { return }
            usleep(max(1, micros))
        }
    }

    public func barrier() throws { try check(barrierFn(comm), "MPI_Barrier") }

    public func abort(code: Int32) -> Never {
        _ = abortFn(comm, code)
        exit(code)
    }
}

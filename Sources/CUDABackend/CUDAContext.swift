// One CUDA device opened through the driver API: its primary context, the kernel modules compiled for its
// architecture (NVRTC + nvJitLink, cached on disk), kernel launches, device memory, and the cuBLASLt handle.
// Device tensors live in `CUDAStorage`; host tensors given to an op are uploaded for the call (`Staging`).
import Foundation
import TensorCore

/// Device memory owned by one tensor storage; freed when the last tensor referring to it goes away.
public final class CUDAStorage: TensorStorage, @unchecked Sendable {
    public let pointer: UInt64
    public let byteCount: Int
    public var device: Device { .cuda(context.ordinal) }
    public var isReadOnly: Bool { false }
    let context: CUDAContext

    init(context: CUDAContext, byteCount: Int) throws {
        var p: UInt64 = 0
        try context.makeCurrent()                          // the driver's current context is per thread
        try context.driver.check(context.driver.cuMemAlloc(&p, max(byteCount, 1)),
                                 "cuMemAlloc(\(byteCount) bytes; \(context.totalMemory >> 20) MiB on the device)")
        self.pointer = p
        self.byteCount = byteCount
        self.context = context
    }

    deinit {
        try? context.makeCurrent()
        _ = context.driver.cuMemFree(pointer)
    }
}

/// One kernel argument, passed by value as the kernel's C parameter type.
enum KernelArg {
    case ptr(UInt64)        // T * (0 for null)
    case i64(Int)           // long long
    case i32(Int32)         // int
    case f32(Float)         // float
    case f64(Double)        // double
    case u64(UInt64)        // unsigned long long
    case dims([Int])        // struct Dims { long long v[17]; }

    var bytes: [UInt8] {
        func raw<T>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
        switch self {
        case .ptr(let p): return raw(p)
        case .i64(let v): return raw(Int64(v))
        case .i32(let v): return raw(v)
        case .f32(let v): return raw(v)
        case .f64(let v): return raw(v)
        case .u64(let v): return raw(v)
        case .dims(let v):
            var d = [Int64](repeating: 0, count: 17)
            for (i, x) in v.prefix(17).enumerated() { d[i] = Int64(x) }
            return d.withUnsafeBytes { Array($0) }
        }
    }
}

/// The opened device.
public final class CUDAContext: @unchecked Sendable {
    let driver: Driver
    let compiler: KernelCompiler
    let cublas: CublasLt
    let cache: KernelCache
    public let ordinal: Int
    public let deviceName: String
    /// Compute capability as one number (90 for sm_90).
    public let arch: Int
    public let multiprocessors: Int
    public let totalMemory: Int
    public let driverVersion: Int
    private var context: RawPtr?
    var blasHandle: RawPtr?
    /// cuBLASLt workspace (32 MiB).
    private(set) var workspace: CUDAStorage!
    private var modules: [String: RawPtr] = [:]
    private var functions: [String: RawPtr] = [:]
    private let lock = NSLock()

    /// Opens device `ordinal`: loads the driver, NVRTC/nvJitLink and cuBLASLt, retains the primary context.
    init(ordinal: Int = 0) throws {
        let driverLib = try DynamicLibrary.open(["libcuda.so.1"], directories: []).get()
        driver = try Driver(driverLib)
        try driver.check(driver.cuInit(0), "cuInit")
        var version: Int32 = 0
        _ = driver.cuDriverGetVersion(&version)
        driverVersion = Int(version)
        var count: Int32 = 0
        try driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        guard ordinal < count else { throw CUDAError.noDevice("the NVIDIA driver sees \(count) GPUs; device \(ordinal) does not exist") }
        var dev: Int32 = 0
        try driver.check(driver.cuDeviceGet(&dev, Int32(ordinal)), "cuDeviceGet(\(ordinal))")
        var name = [CChar](repeating: 0, count: 256)
        _ = driver.cuDeviceGetName(&name, 255, dev)
        deviceName = cString(name)
        var major: Int32 = 0, minor: Int32 = 0, sms: Int32 = 0
        _ = driver.cuDeviceGetAttribute(&major, DriverAPI.computeCapabilityMajor.value, dev)
        _ = driver.cuDeviceGetAttribute(&minor, DriverAPI.computeCapabilityMinor.value, dev)
        _ = driver.cuDeviceGetAttribute(&sms, DriverAPI.multiprocessorCount.value, dev)
        arch = Int(major) * 10 + Int(minor)
        multiprocessors = Int(sms)
        var mem = 0
        _ = driver.cuDeviceTotalMem(&mem, dev)
        totalMemory = mem
        self.ordinal = ordinal
        guard arch >= 80 else {
            throw CUDAError.noDevice("\(deviceName) is sm_\(arch); the CUDA backend needs sm_80 (Ampere) or newer (bf16 conversions)")
        }
        try driver.check(driver.cuDevicePrimaryCtxRetain(&context, dev), "cuDevicePrimaryCtxRetain")
        try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
        compiler = try KernelCompiler()
        let blasLib = try DynamicLibrary.open(["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"],
                                              directories: cudaLibraryDirectories()).get()
        cublas = try CublasLt(blasLib)
        try cublas.check(cublas.create(&blasHandle), "cublasLtCreate")
        cache = KernelCache()
        workspace = try CUDAStorage(context: self, byteCount: 32 << 20)
    }

    /// Makes this context current on the calling thread (the driver keeps the current context per thread).
    func makeCurrent() throws { try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent") }

    /// The kernel `name`, compiling and loading its family on first use.
    func function(_ name: String) throws -> RawPtr {
        try lock.withLock {
            if let f = functions[name] { return f }
            guard let family = KernelFamily.containing(name) else {
                throw CUDAError.noDevice("internal error: no kernel family defines \(name)")
            }
            let module: RawPtr
            if let m = modules[family.name] {
                module = m
            } else {
                let bin = try compiler.cachedCubin(family, arch: arch, cache: cache)
                var m: RawPtr?
                try bin.withUnsafeBytes { try driver.check(driver.cuModuleLoadData(&m, $0.baseAddress), "cuModuleLoadData(\(family.name))") }
                guard let m else { throw CUDAError.driver("cuModuleLoadData(\(family.name))", code: -1, message: "no module") }
                modules[family.name] = m
                module = m
            }
            var f: RawPtr?
            try name.withCString { try driver.check(driver.cuModuleGetFunction(&f, module, $0), "cuModuleGetFunction(\(name))") }
            guard let f else { throw CUDAError.driver("cuModuleGetFunction(\(name))", code: -1, message: "no function") }
            functions[name] = f
            return f
        }
    }

    /// Launches `name` on the default stream.
    func launch(_ name: String, grid: (Int, Int, Int), block: Int, shared: Int = 0, _ args: [KernelArg]) throws {
        try makeCurrent()
        let f = try function(name)
        if shared > 48 << 10 {
            try driver.check(driver.cuFuncSetAttribute(f, DriverAPI.maxDynamicShared.value, Int32(shared)),
                             "cuFuncSetAttribute(\(name), \(shared) bytes of shared memory)")
        }
        let buffers = args.map { a -> RawPtr in
            let b = a.bytes
            let p = RawPtr.allocate(byteCount: b.count, alignment: 8)
            b.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: b.count) }
            return p
        }
        defer { buffers.forEach { $0.deallocate() } }
        var params: [RawPtr?] = buffers
        let status = params.withUnsafeMutableBufferPointer {
            driver.cuLaunchKernel(f, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block), 1, 1, UInt32(shared), nil,
                                  $0.baseAddress, nil)
        }
        try driver.check(status, "launching \(name) (grid \(grid), block \(block))")
    }

    /// Grid size for a grid-stride loop over n items with 256-thread blocks.
    func blocks(_ n: Int, per: Int = 256) -> Int { max(1, min((n + per - 1) / per, max(multiprocessors, 1) * 32)) }

    func synchronize() throws {
        try makeCurrent()
        try driver.check(driver.cuCtxSynchronize(), "cuCtxSynchronize")
    }
}

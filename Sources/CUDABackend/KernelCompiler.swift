// Compiles the CUDA C kernel families at run time: NVRTC to PTX, nvJitLink to a cubin for one sm_XY, both loaded
// with dlopen. Results are cached on disk by a hash of source, architecture, options and compiler versions, so
// only the first use on a machine pays for compilation.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// NVRTC + nvJitLink, loaded from `HPRUNE_NVRTC`, `HPRUNE_CUDA_LIBS`, the toolkit folders or the default path.
public final class KernelCompiler: @unchecked Sendable {
    let nvrtcLib: DynamicLibrary
    let linkLib: DynamicLibrary
    private let createProgram: @convention(c) (RawPtr?, CRawPtr?, CRawPtr?, Int32, CRawPtr?, CRawPtr?) -> Int32
    private let destroyProgram: @convention(c) (RawPtr?) -> Int32
    private let compileProgram: @convention(c) (RawPtr?, Int32, CRawPtr?) -> Int32
    private let ptxSize: @convention(c) (RawPtr?, RawPtr?) -> Int32
    private let getPTX: @convention(c) (RawPtr?, RawPtr?) -> Int32
    private let logSize: @convention(c) (RawPtr?, RawPtr?) -> Int32
    private let getLog: @convention(c) (RawPtr?, RawPtr?) -> Int32
    private let errorString: @convention(c) (Int32) -> UnsafePointer<CChar>?
    private let linkCreate: @convention(c) (RawPtr?, UInt32, RawPtr?) -> Int32
    private let linkDestroy: @convention(c) (RawPtr?) -> Int32
    private let linkAdd: @convention(c) (RawPtr?, Int32, CRawPtr?, Int, CRawPtr?) -> Int32
    private let linkComplete: @convention(c) (RawPtr?) -> Int32
    private let cubinSize: @convention(c) (RawPtr?, RawPtr?) -> Int32
    private let getCubin: @convention(c) (RawPtr?, RawPtr?) -> Int32
    private let linkLogSize: @convention(c) (RawPtr?, RawPtr?) -> Int32
    private let linkLog: @convention(c) (RawPtr?, RawPtr?) -> Int32
    /// NVRTC's (major, minor) version.
    public let version: (Int, Int)

    /// Loads NVRTC and nvJitLink (CUDA 13 first, then 12).
    public init() throws {
        let dirs = cudaLibraryDirectories()
        nvrtcLib = try DynamicLibrary.open(["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"], directories: dirs).get()
        linkLib = try DynamicLibrary.open(["libnvJitLink.so.13", "libnvJitLink.so.12", "libnvJitLink.so"], directories: dirs).get()
        createProgram = try nvrtcLib.load(NVRTCAPI.nvrtcCreateProgram)
        destroyProgram = try nvrtcLib.load(NVRTCAPI.nvrtcDestroyProgram)
        compileProgram = try nvrtcLib.load(NVRTCAPI.nvrtcCompileProgram)
        ptxSize = try nvrtcLib.load(NVRTCAPI.nvrtcGetPTXSize)
        getPTX = try nvrtcLib.load(NVRTCAPI.nvrtcGetPTX)
        logSize = try nvrtcLib.load(NVRTCAPI.nvrtcGetProgramLogSize)
        getLog = try nvrtcLib.load(NVRTCAPI.nvrtcGetProgramLog)
        errorString = try nvrtcLib.load(NVRTCAPI.nvrtcGetErrorString)
        let ver: @convention(c) (RawPtr?, RawPtr?) -> Int32 = try nvrtcLib.load(NVRTCAPI.nvrtcVersion)
        var major: Int32 = 0, minor: Int32 = 0
        _ = ver(&major, &minor)
        version = (Int(major), Int(minor))
        linkCreate = try linkLib.load(NVJitLinkAPI.nvJitLinkCreate)
        linkDestroy = try linkLib.load(NVJitLinkAPI.nvJitLinkDestroy)
        linkAdd = try linkLib.load(NVJitLinkAPI.nvJitLinkAddData)
        linkComplete = try linkLib.load(NVJitLinkAPI.nvJitLinkComplete)
        cubinSize = try linkLib.load(NVJitLinkAPI.nvJitLinkGetLinkedCubinSize)
        getCubin = try linkLib.load(NVJitLinkAPI.nvJitLinkGetLinkedCubin)
        linkLogSize = try linkLib.load(NVJitLinkAPI.nvJitLinkGetErrorLogSize)
        linkLog = try linkLib.load(NVJitLinkAPI.nvJitLinkGetErrorLog)
    }

    /// Calls `body` with a C array of C strings (valid only inside the call).
    private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) throws -> R) rethrows -> R {
        let dup = strings.map { UnsafePointer(strdup($0)) }
        defer { dup.forEach { free(UnsafeMutablePointer(mutating: $0)) } }
        return try dup.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }

    /// The family's PTX for virtual architecture compute_`arch` (e.g. 90).
    public func ptx(_ family: KernelFamily, arch: Int) throws -> [UInt8] {
        var prog: RawPtr?
        let status = family.source.withCString { src in
            family.name.withCString { name in createProgram(&prog, src, name, 0, nil, nil) }
        }
        guard status == 0 else { throw CUDAError.nvrtc("cannot create program \(family.name): \(message(status))", log: "") }
        defer { _ = destroyProgram(&prog) }
        let options = ["--gpu-architecture=compute_\(arch)"] + KernelFamily.commonOptions + family.options
        let compiled = withCStrings(options) { compileProgram(prog, Int32(options.count), $0) }
        var n = 0
        _ = logSize(prog, &n)
        var log = [CChar](repeating: 0, count: max(n, 1))
        _ = getLog(prog, &log)
        guard compiled == 0 else {
            throw CUDAError.nvrtc("family \(family.name) does not compile for compute_\(arch) (\(message(compiled)))",
                                  log: cString(log))
        }
        var size = 0
        _ = ptxSize(prog, &size)
        var out = [UInt8](repeating: 0, count: size)
        _ = out.withUnsafeMutableBytes { getPTX(prog, $0.baseAddress) }
        return out
    }

    /// PTX (NUL-terminated) linked into a cubin for sm_`arch` by nvJitLink.
    public func cubin(ptx: [UInt8], arch: Int, name: String) throws -> [UInt8] {
        var handle: RawPtr?
        let created = withCStrings(["-arch=sm_\(arch)"]) { linkCreate(&handle, 1, RawPtr(mutating: $0)) }
        guard created == 0 else { throw CUDAError.nvJitLink("cannot create a linker for sm_\(arch) (status \(created))", log: "") }
        defer { _ = linkDestroy(&handle) }
        let added = ptx.withUnsafeBytes { p in name.withCString { linkAdd(handle, NVJitLinkAPI.inputPTX.value, p.baseAddress, p.count, $0) } }
        let done = added == 0 ? linkComplete(handle) : added
        guard done == 0 else {
            var n = 0
            _ = linkLogSize(handle, &n)
            var log = [CChar](repeating: 0, count: max(n, 1))
            _ = linkLog(handle, &log)
            throw CUDAError.nvJitLink("\(name) does not link for sm_\(arch) (status \(done))", log: cString(log))
        }
        var size = 0
        _ = cubinSize(handle, &size)
        var out = [UInt8](repeating: 0, count: size)
        _ = out.withUnsafeMutableBytes { getCubin(handle, $0.baseAddress) }
        return out
    }

    private func message(_ status: Int32) -> String {
        errorString(status).map { String(cString: $0) } ?? "status \(status)"
    }

    /// The family's cubin for sm_`arch`, from the cache when present (then compiled and stored).
    public func cachedCubin(_ family: KernelFamily, arch: Int, cache: KernelCache) throws -> [UInt8] {
        let key = KernelCache.key([family.source, "sm_\(arch)", (KernelFamily.commonOptions + family.options).joined(separator: " "),
                                   "nvrtc \(version.0).\(version.1)"])
        if let hit = cache.load(key) { return hit }
        let bin = try cubin(ptx: ptx(family, arch: arch), arch: arch, name: family.name)
        cache.store(key, bin)
        return bin
    }
}

/// On-disk cache of compiled cubins: `HPRUNE_KERNEL_CACHE`, else `$XDG_CACHE_HOME/hprune/cuda`, else
/// `~/.cache/hprune/cuda`. Files are written to a temporary name and renamed; a failure to write only costs time.
public struct KernelCache: Sendable {
    public let directory: String

    public init(directory override: String? = nil) {
        let env = ProcessInfo.processInfo.environment
        directory = override ?? env["HPRUNE_KERNEL_CACHE"]
            ?? ((env["XDG_CACHE_HOME"] ?? (NSHomeDirectory() + "/.cache")) + "/hprune/cuda")
    }

    /// A 128-bit FNV-1a hash (two 64-bit lanes with different offsets) of the parts, as 32 hex digits.
    public static func key(_ parts: [String]) -> String {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325, b: UInt64 = 0x6c62_272e_07bb_0142
        for p in parts {
            for byte in p.utf8 + [0] {
                a = (a ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
                b = (b ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 &+ 1
            }
        }
        return String(format: "%016llx%016llx", a, b)
    }

    func load(_ key: String) -> [UInt8]? {
        FileManager.default.contents(atPath: "\(directory)/\(key).cubin").map { [UInt8]($0) }
    }

    func store(_ key: String, _ bytes: [UInt8]) {
        let fm = FileManager.default
        guard (try? fm.createDirectory(atPath: directory, withIntermediateDirectories: true)) != nil else { return }
        let tmp = "\(directory)/.\(key).\(getpid()).tmp"
        guard fm.createFile(atPath: tmp, contents: Data(bytes)) else { return }
        if rename(tmp, "\(directory)/\(key).cubin") != 0 { unlink(tmp) }
    }
}

// The CUDA libraries the backend uses, bound at run time with dlopen/dlsym so one binary serves CPU-only and GPU
// machines: the driver API (libcuda.so.1), NVRTC, nvJitLink and cuBLASLt. Every bound function and enum value is
// listed once here with its C prototype; CUDABindingTests compares that table with the headers of NVIDIA's wheels.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// One C function bound with dlsym: where it is declared, its C prototype, and the Swift type we call it through.
public struct CFunctionSpec: Sendable, CustomStringConvertible {
    /// The header that declares it ("cuda.h", "nvrtc.h", "nvJitLink.h", "cublasLt.h").
    public let header: String
    /// The name the header declares ("cuMemAlloc"), which may be a macro for the exported symbol.
    public let name: String
    /// Exported symbols to try, in order ("cuMemAlloc_v2"; versioned nvJitLink entry points).
    public let symbols: [String]
    /// C return type and parameter types as the header spells them, parameter names dropped ("const char *").
    public let returns: String
    public let params: [String]
    /// `String(describing:)` of the `@convention(c)` type the backend casts the symbol to.
    public let swiftType: String

    public var description: String { "\(returns) \(name)(\(params.joined(separator: ", ")))" }
}

/// A typed binding: the spec plus the Swift function type `T` it is called through.
struct CFn<T>: Sendable {
    let spec: CFunctionSpec
    init(_ header: String, _ name: String, symbols: [String]? = nil, _ returns: String, _ params: [String]) {
        spec = CFunctionSpec(header: header, name: name, symbols: symbols ?? [name], returns: returns, params: params,
                             swiftType: String(describing: T.self))
    }
}

/// An enum constant we pass to a library, checked against its header.
public struct CConstantSpec: Sendable {
    public let header: String
    public let name: String
    public let value: Int32
}

/// A dlopen'ed shared library.
final class DynamicLibrary: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    let path: String

    private init(handle: UnsafeMutableRawPointer, path: String) {
        self.handle = handle
        self.path = path
    }

    /// Opens the first of `names` found in `directories` (then on the default search path); the error lists what
    /// was tried and dlerror's last answer.
    static func open(_ names: [String], directories: [String]) -> Result<DynamicLibrary, CUDAError> {
        var tried: [String] = []
        var lastError = ""
        for name in names {
            for path in directories.map({ "\($0)/\(name)" }) + [name] {
                tried.append(path)
                if let h = dlopen(path, RTLD_NOW | RTLD_LOCAL) { return .success(DynamicLibrary(handle: h, path: path)) }
                if let e = dlerror() { lastError = String(cString: e) }
            }
        }
        return .failure(.libraryMissing(names[0], tried: tried, dlerror: lastError))
    }

    /// The function `f` as its Swift type; throws naming the symbols when none is exported.
    func load<T>(_ f: CFn<T>) throws -> T {
        for s in f.spec.symbols {
            if let p = dlsym(handle, s) { return unsafeBitCast(p, to: T.self) }
        }
        throw CUDAError.symbolMissing(f.spec.symbols.joined(separator: " / "), library: path)
    }
}

/// Where to look for the CUDA user-space libraries besides the default search path: `HPRUNE_NVRTC` (a folder with
/// libnvrtc / libnvJitLink, e.g. from Tests/GPU/fetch-nvrtc.sh), `HPRUNE_CUDA_LIBS` (colon-separated folders),
/// then the usual toolkit folders.
func cudaLibraryDirectories() -> [String] {
    let env = ProcessInfo.processInfo.environment
    var dirs: [String] = []
    if let d = env["HPRUNE_NVRTC"], !d.isEmpty { dirs.append(d) }
    if let d = env["HPRUNE_CUDA_LIBS"] { dirs += d.split(separator: ":").map(String.init) }
    if let d = env["CUDA_HOME"] ?? env["CUDA_PATH"] { dirs.append("\(d)/lib64") }
    dirs += ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu"]
    return dirs
}

// MARK: - driver API (cuda.h)

typealias CUresult = Int32
typealias RawPtr = UnsafeMutableRawPointer
typealias CRawPtr = UnsafeRawPointer

/// The driver API functions we call (cuda.h). CUdeviceptr is `unsigned long long` (64-bit builds).
enum DriverAPI {
    static let h = "cuda.h"
    static let cuInit = CFn<@convention(c) (UInt32) -> Int32>(h, "cuInit", "CUresult", ["unsigned int"])
    static let cuDriverGetVersion = CFn<@convention(c) (RawPtr?) -> Int32>(h, "cuDriverGetVersion", "CUresult", ["int *"])
    static let cuDeviceGetCount = CFn<@convention(c) (RawPtr?) -> Int32>(h, "cuDeviceGetCount", "CUresult", ["int *"])
    static let cuDeviceGet = CFn<@convention(c) (RawPtr?, Int32) -> Int32>(h, "cuDeviceGet", "CUresult", ["CUdevice *", "int"])
    static let cuDeviceGetName = CFn<@convention(c) (RawPtr?, Int32, Int32) -> Int32>(
        h, "cuDeviceGetName", "CUresult", ["char *", "int", "CUdevice"])
    static let cuDeviceGetAttribute = CFn<@convention(c) (RawPtr?, Int32, Int32) -> Int32>(
        h, "cuDeviceGetAttribute", "CUresult", ["int *", "CUdevice_attribute", "CUdevice"])
    static let cuDeviceTotalMem = CFn<@convention(c) (RawPtr?, Int32) -> Int32>(
        h, "cuDeviceTotalMem", symbols: ["cuDeviceTotalMem_v2"], "CUresult", ["size_t *", "CUdevice"])
    static let cuDevicePrimaryCtxRetain = CFn<@convention(c) (RawPtr?, Int32) -> Int32>(
        h, "cuDevicePrimaryCtxRetain", "CUresult", ["CUcontext *", "CUdevice"])
    static let cuCtxSetCurrent = CFn<@convention(c) (RawPtr?) -> Int32>(h, "cuCtxSetCurrent", "CUresult", ["CUcontext"])
    static let cuCtxSynchronize = CFn<@convention(c) () -> Int32>(h, "cuCtxSynchronize", "CUresult", ["void"])
    static let cuMemAlloc = CFn<@convention(c) (RawPtr?, Int) -> Int32>(
        h, "cuMemAlloc", symbols: ["cuMemAlloc_v2"], "CUresult", ["CUdeviceptr *", "size_t"])
    static let cuMemFree = CFn<@convention(c) (UInt64) -> Int32>(h, "cuMemFree", symbols: ["cuMemFree_v2"], "CUresult", ["CUdeviceptr"])
    static let cuMemcpyHtoD = CFn<@convention(c) (UInt64, CRawPtr?, Int) -> Int32>(
        h, "cuMemcpyHtoD", symbols: ["cuMemcpyHtoD_v2"], "CUresult", ["CUdeviceptr", "const void *", "size_t"])
    static let cuMemcpyDtoH = CFn<@convention(c) (RawPtr?, UInt64, Int) -> Int32>(
        h, "cuMemcpyDtoH", symbols: ["cuMemcpyDtoH_v2"], "CUresult", ["void *", "CUdeviceptr", "size_t"])
    static let cuMemcpyDtoD = CFn<@convention(c) (UInt64, UInt64, Int) -> Int32>(
        h, "cuMemcpyDtoD", symbols: ["cuMemcpyDtoD_v2"], "CUresult", ["CUdeviceptr", "CUdeviceptr", "size_t"])
    static let cuMemsetD8 = CFn<@convention(c) (UInt64, UInt8, Int) -> Int32>(
        h, "cuMemsetD8", symbols: ["cuMemsetD8_v2"], "CUresult", ["CUdeviceptr", "unsigned char", "size_t"])
    static let cuModuleLoadData = CFn<@convention(c) (RawPtr?, CRawPtr?) -> Int32>(
        h, "cuModuleLoadData", "CUresult", ["CUmodule *", "const void *"])
    static let cuModuleGetFunction = CFn<@convention(c) (RawPtr?, RawPtr?, CRawPtr?) -> Int32>(
        h, "cuModuleGetFunction", "CUresult", ["CUfunction *", "CUmodule", "const char *"])
    static let cuFuncSetAttribute = CFn<@convention(c) (RawPtr?, Int32, Int32) -> Int32>(
        h, "cuFuncSetAttribute", "CUresult", ["CUfunction", "CUfunction_attribute", "int"])
    static let cuLaunchKernel = CFn<@convention(c) (RawPtr?, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, RawPtr?,
                                                    UnsafeMutablePointer<RawPtr?>?, UnsafeMutablePointer<RawPtr?>?) -> Int32>(
        h, "cuLaunchKernel", "CUresult",
        ["CUfunction", "unsigned int", "unsigned int", "unsigned int", "unsigned int", "unsigned int", "unsigned int",
         "unsigned int", "CUstream", "void **", "void **"])
    static let cuGetErrorString = CFn<@convention(c) (Int32, RawPtr?) -> Int32>(
        h, "cuGetErrorString", "CUresult", ["CUresult", "const char **"])

    static let all: [CFunctionSpec] = [
        cuInit.spec, cuDriverGetVersion.spec, cuDeviceGetCount.spec, cuDeviceGet.spec, cuDeviceGetName.spec,
        cuDeviceGetAttribute.spec, cuDeviceTotalMem.spec, cuDevicePrimaryCtxRetain.spec, cuCtxSetCurrent.spec,
        cuCtxSynchronize.spec, cuMemAlloc.spec, cuMemFree.spec, cuMemcpyHtoD.spec, cuMemcpyDtoH.spec, cuMemcpyDtoD.spec,
        cuMemsetD8.spec, cuModuleLoadData.spec, cuModuleGetFunction.spec, cuFuncSetAttribute.spec, cuLaunchKernel.spec,
        cuGetErrorString.spec,
    ]

    static let computeCapabilityMajor = CConstantSpec(header: h, name: "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR", value: 75)
    static let computeCapabilityMinor = CConstantSpec(header: h, name: "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR", value: 76)
    static let multiprocessorCount = CConstantSpec(header: h, name: "CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT", value: 16)
    static let maxDynamicShared = CConstantSpec(header: h, name: "CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES", value: 8)
    static let constants = [computeCapabilityMajor, computeCapabilityMinor, multiprocessorCount, maxDynamicShared]
}

/// The loaded driver API.
struct Driver: @unchecked Sendable {
    let library: DynamicLibrary
    let cuInit: @convention(c) (UInt32) -> Int32
    let cuDriverGetVersion: @convention(c) (RawPtr?) -> Int32
    let cuDeviceGetCount: @convention(c) (RawPtr?) -> Int32
    let cuDeviceGet: @convention(c) (RawPtr?, Int32) -> Int32
    let cuDeviceGetName: @convention(c) (RawPtr?, Int32, Int32) -> Int32
    let cuDeviceGetAttribute: @convention(c) (RawPtr?, Int32, Int32) -> Int32
    let cuDeviceTotalMem: @convention(c) (RawPtr?, Int32) -> Int32
    let cuDevicePrimaryCtxRetain: @convention(c) (RawPtr?, Int32) -> Int32
    let cuCtxSetCurrent: @convention(c) (RawPtr?) -> Int32
    let cuCtxSynchronize: @convention(c) () -> Int32
    let cuMemAlloc: @convention(c) (RawPtr?, Int) -> Int32
    let cuMemFree: @convention(c) (UInt64) -> Int32
    let cuMemcpyHtoD: @convention(c) (UInt64, CRawPtr?, Int) -> Int32
    let cuMemcpyDtoH: @convention(c) (RawPtr?, UInt64, Int) -> Int32
    let cuMemcpyDtoD: @convention(c) (UInt64, UInt64, Int) -> Int32
    let cuMemsetD8: @convention(c) (UInt64, UInt8, Int) -> Int32
    let cuModuleLoadData: @convention(c) (RawPtr?, CRawPtr?) -> Int32
    let cuModuleGetFunction: @convention(c) (RawPtr?, RawPtr?, CRawPtr?) -> Int32
    let cuFuncSetAttribute: @convention(c) (RawPtr?, Int32, Int32) -> Int32
    let cuLaunchKernel: @convention(c) (RawPtr?, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, RawPtr?,
                                        UnsafeMutablePointer<RawPtr?>?, UnsafeMutablePointer<RawPtr?>?) -> Int32
    let cuGetErrorString: @convention(c) (Int32, RawPtr?) -> Int32

    init(_ lib: DynamicLibrary) throws {
        library = lib
        cuInit = try lib.load(DriverAPI.cuInit)
        cuDriverGetVersion = try lib.load(DriverAPI.cuDriverGetVersion)
        cuDeviceGetCount = try lib.load(DriverAPI.cuDeviceGetCount)
        cuDeviceGet = try lib.load(DriverAPI.cuDeviceGet)
        cuDeviceGetName = try lib.load(DriverAPI.cuDeviceGetName)
        cuDeviceGetAttribute = try lib.load(DriverAPI.cuDeviceGetAttribute)
        cuDeviceTotalMem = try lib.load(DriverAPI.cuDeviceTotalMem)
        cuDevicePrimaryCtxRetain = try lib.load(DriverAPI.cuDevicePrimaryCtxRetain)
        cuCtxSetCurrent = try lib.load(DriverAPI.cuCtxSetCurrent)
        cuCtxSynchronize = try lib.load(DriverAPI.cuCtxSynchronize)
        cuMemAlloc = try lib.load(DriverAPI.cuMemAlloc)
        cuMemFree = try lib.load(DriverAPI.cuMemFree)
        cuMemcpyHtoD = try lib.load(DriverAPI.cuMemcpyHtoD)
        cuMemcpyDtoH = try lib.load(DriverAPI.cuMemcpyDtoH)
        cuMemcpyDtoD = try lib.load(DriverAPI.cuMemcpyDtoD)
        cuMemsetD8 = try lib.load(DriverAPI.cuMemsetD8)
        cuModuleLoadData = try lib.load(DriverAPI.cuModuleLoadData)
        cuModuleGetFunction = try lib.load(DriverAPI.cuModuleGetFunction)
        cuFuncSetAttribute = try lib.load(DriverAPI.cuFuncSetAttribute)
        cuLaunchKernel = try lib.load(DriverAPI.cuLaunchKernel)
        cuGetErrorString = try lib.load(DriverAPI.cuGetErrorString)
    }

    /// Throws a `CUDAError.driver` naming `what` unless `status` is CUDA_SUCCESS.
    func check(_ status: Int32, _ what: @autoclosure () -> String) throws {
        guard status != 0 else { return }
        var p: UnsafePointer<CChar>?
        let name = withUnsafeMutablePointer(to: &p) { cuGetErrorString(status, RawPtr($0)) } == 0 && p != nil
            ? String(cString: p!) : "unknown error"
        throw CUDAError.driver(what(), code: status, message: name)
    }
}

// MARK: - NVRTC (nvrtc.h) and nvJitLink (nvJitLink.h)

enum NVRTCAPI {
    static let h = "nvrtc.h"
    static let nvrtcVersion = CFn<@convention(c) (RawPtr?, RawPtr?) -> Int32>(h, "nvrtcVersion", "nvrtcResult", ["int *", "int *"])
    static let nvrtcGetErrorString = CFn<@convention(c) (Int32) -> UnsafePointer<CChar>?>(
        h, "nvrtcGetErrorString", "const char *", ["nvrtcResult"])
    static let nvrtcCreateProgram = CFn<@convention(c) (RawPtr?, CRawPtr?, CRawPtr?, Int32, CRawPtr?, CRawPtr?) -> Int32>(
        h, "nvrtcCreateProgram", "nvrtcResult",
        ["nvrtcProgram *", "const char *", "const char *", "int", "const char * const *", "const char * const *"])
    static let nvrtcDestroyProgram = CFn<@convention(c) (RawPtr?) -> Int32>(h, "nvrtcDestroyProgram", "nvrtcResult", ["nvrtcProgram *"])
    static let nvrtcCompileProgram = CFn<@convention(c) (RawPtr?, Int32, CRawPtr?) -> Int32>(
        h, "nvrtcCompileProgram", "nvrtcResult", ["nvrtcProgram", "int", "const char * const *"])
    static let nvrtcGetPTXSize = CFn<@convention(c) (RawPtr?, RawPtr?) -> Int32>(h, "nvrtcGetPTXSize", "nvrtcResult", ["nvrtcProgram", "size_t *"])
    static let nvrtcGetPTX = CFn<@convention(c) (RawPtr?, RawPtr?) -> Int32>(h, "nvrtcGetPTX", "nvrtcResult", ["nvrtcProgram", "char *"])
    static let nvrtcGetCUBINSize = CFn<@convention(c) (RawPtr?, RawPtr?) -> Int32>(h, "nvrtcGetCUBINSize", "nvrtcResult", ["nvrtcProgram", "size_t *"])
    static let nvrtcGetCUBIN = CFn<@convention(c) (RawPtr?, RawPtr?) -> Int32>(h, "nvrtcGetCUBIN", "nvrtcResult", ["nvrtcProgram", "char *"])
    static let nvrtcGetProgramLogSize = CFn<@convention(c) (RawPtr?, RawPtr?) -> Int32>(
        h, "nvrtcGetProgramLogSize", "nvrtcResult", ["nvrtcProgram", "size_t *"])
    static let nvrtcGetProgramLog = CFn<@convention(c) (RawPtr?, RawPtr?) -> Int32>(h, "nvrtcGetProgramLog", "nvrtcResult", ["nvrtcProgram", "char *"])

    static let all: [CFunctionSpec] = [
        nvrtcVersion.spec, nvrtcGetErrorString.spec, nvrtcCreateProgram.spec, nvrtcDestroyProgram.spec,
        nvrtcCompileProgram.spec, nvrtcGetPTXSize.spec, nvrtcGetPTX.spec, nvrtcGetCUBINSize.spec, nvrtcGetCUBIN.spec,
        nvrtcGetProgramLogSize.spec, nvrtcGetProgramLog.spec,
    ]
}

/// nvJitLink exports versioned entry points (`__nvJitLinkCreate_12_0` …) behind the header's inline wrappers.
enum NVJitLinkAPI {
    static let h = "nvJitLink.h"
    static func versioned(_ n: String) -> [String] { ["__\(n)_13_0", "__\(n)_12_0", n] }
    static let nvJitLinkCreate = CFn<@convention(c) (RawPtr?, UInt32, RawPtr?) -> Int32>(
        h, "nvJitLinkCreate", symbols: versioned("nvJitLinkCreate"), "nvJitLinkResult", ["nvJitLinkHandle *", "uint32_t", "const char **"])
    static let nvJitLinkDestroy = CFn<@convention(c) (RawPtr?) -> Int32>(
        h, "nvJitLinkDestroy", symbols: versioned("nvJitLinkDestroy"), "nvJitLinkResult", ["nvJitLinkHandle *"])
    static let nvJitLinkAddData = CFn<@convention(c) (RawPtr?, Int32, CRawPtr?, Int, CRawPtr?) -> Int32>(
        h, "nvJitLinkAddData", symbols: versioned("nvJitLinkAddData"), "nvJitLinkResult",
        ["nvJitLinkHandle", "nvJitLinkInputType", "const void *", "size_t", "const char *"])
    static let nvJitLinkComplete = CFn<@convention(c) (RawPtr?) -> Int32>(
        h, "nvJitLinkComplete", symbols: versioned("nvJitLinkComplete"), "nvJitLinkResult", ["nvJitLinkHandle"])
    static let nvJitLinkGetLinkedCubinSize = CFn<@convention(c) (RawPtr?, RawPtr?) -> Int32>(
        h, "nvJitLinkGetLinkedCubinSize", symbols: versioned("nvJitLinkGetLinkedCubinSize"), "nvJitLinkResult", ["nvJitLinkHandle", "size_t *"])
    static let nvJitLinkGetLinkedCubin = CFn<@convention(c) (RawPtr?, RawPtr?) -> Int32>(
        h, "nvJitLinkGetLinkedCubin", symbols: versioned("nvJitLinkGetLinkedCubin"), "nvJitLinkResult", ["nvJitLinkHandle", "void *"])
    static let nvJitLinkGetErrorLogSize = CFn<@convention(c) (RawPtr?, RawPtr?) -> Int32>(
        h, "nvJitLinkGetErrorLogSize", symbols: versioned("nvJitLinkGetErrorLogSize"), "nvJitLinkResult", ["nvJitLinkHandle", "size_t *"])
    static let nvJitLinkGetErrorLog = CFn<@convention(c) (RawPtr?, RawPtr?) -> Int32>(
        h, "nvJitLinkGetErrorLog", symbols: versioned("nvJitLinkGetErrorLog"), "nvJitLinkResult", ["nvJitLinkHandle", "char *"])

    static let all: [CFunctionSpec] = [
        nvJitLinkCreate.spec, nvJitLinkDestroy.spec, nvJitLinkAddData.spec, nvJitLinkComplete.spec,
        nvJitLinkGetLinkedCubinSize.spec, nvJitLinkGetLinkedCubin.spec, nvJitLinkGetErrorLogSize.spec,
        nvJitLinkGetErrorLog.spec,
    ]
    static let inputPTX = CConstantSpec(header: h, name: "NVJITLINK_INPUT_PTX", value: 2)
    static let constants = [inputPTX]
}

// MARK: - cuBLASLt (cublasLt.h, cublas_api.h, library_types.h)

enum CublasLtAPI {
    static let h = "cublasLt.h"
    static let cublasLtCreate = CFn<@convention(c) (RawPtr?) -> Int32>(h, "cublasLtCreate", "cublasStatus_t", ["cublasLtHandle_t *"])
    static let cublasLtGetVersion = CFn<@convention(c) () -> Int>(h, "cublasLtGetVersion", "size_t", ["void"])
    static let cublasLtMatmulDescCreate = CFn<@convention(c) (RawPtr?, Int32, Int32) -> Int32>(
        h, "cublasLtMatmulDescCreate", "cublasStatus_t", ["cublasLtMatmulDesc_t *", "cublasComputeType_t", "cudaDataType_t"])
    static let cublasLtMatmulDescDestroy = CFn<@convention(c) (RawPtr?) -> Int32>(
        h, "cublasLtMatmulDescDestroy", "cublasStatus_t", ["cublasLtMatmulDesc_t"])
    static let cublasLtMatmulDescSetAttribute = CFn<@convention(c) (RawPtr?, Int32, CRawPtr?, Int) -> Int32>(
        h, "cublasLtMatmulDescSetAttribute", "cublasStatus_t",
        ["cublasLtMatmulDesc_t", "cublasLtMatmulDescAttributes_t", "const void *", "size_t"])
    static let cublasLtMatrixLayoutCreate = CFn<@convention(c) (RawPtr?, Int32, UInt64, UInt64, Int64) -> Int32>(
        h, "cublasLtMatrixLayoutCreate", "cublasStatus_t",
        ["cublasLtMatrixLayout_t *", "cudaDataType", "uint64_t", "uint64_t", "int64_t"])
    static let cublasLtMatrixLayoutDestroy = CFn<@convention(c) (RawPtr?) -> Int32>(
        h, "cublasLtMatrixLayoutDestroy", "cublasStatus_t", ["cublasLtMatrixLayout_t"])
    static let cublasLtMatrixLayoutSetAttribute = CFn<@convention(c) (RawPtr?, Int32, CRawPtr?, Int) -> Int32>(
        h, "cublasLtMatrixLayoutSetAttribute", "cublasStatus_t",
        ["cublasLtMatrixLayout_t", "cublasLtMatrixLayoutAttribute_t", "const void *", "size_t"])
    static let cublasLtMatmulPreferenceCreate = CFn<@convention(c) (RawPtr?) -> Int32>(
        h, "cublasLtMatmulPreferenceCreate", "cublasStatus_t", ["cublasLtMatmulPreference_t *"])
    static let cublasLtMatmulPreferenceDestroy = CFn<@convention(c) (RawPtr?) -> Int32>(
        h, "cublasLtMatmulPreferenceDestroy", "cublasStatus_t", ["cublasLtMatmulPreference_t"])
    static let cublasLtMatmulPreferenceSetAttribute = CFn<@convention(c) (RawPtr?, Int32, CRawPtr?, Int) -> Int32>(
        h, "cublasLtMatmulPreferenceSetAttribute", "cublasStatus_t",
        ["cublasLtMatmulPreference_t", "cublasLtMatmulPreferenceAttributes_t", "const void *", "size_t"])
    static let cublasLtMatmulAlgoGetHeuristic = CFn<@convention(c) (RawPtr?, RawPtr?, RawPtr?, RawPtr?, RawPtr?, RawPtr?, RawPtr?,
                                                                    Int32, RawPtr?, RawPtr?) -> Int32>(
        h, "cublasLtMatmulAlgoGetHeuristic", "cublasStatus_t",
        ["cublasLtHandle_t", "cublasLtMatmulDesc_t", "cublasLtMatrixLayout_t", "cublasLtMatrixLayout_t",
         "cublasLtMatrixLayout_t", "cublasLtMatrixLayout_t", "cublasLtMatmulPreference_t", "int",
         "cublasLtMatmulHeuristicResult_t *", "int *"])
    static let cublasLtMatmul = CFn<@convention(c) (RawPtr?, RawPtr?, CRawPtr?, CRawPtr?, RawPtr?, CRawPtr?, RawPtr?, CRawPtr?,
                                                    CRawPtr?, RawPtr?, RawPtr?, RawPtr?, CRawPtr?, RawPtr?, Int, RawPtr?) -> Int32>(
        h, "cublasLtMatmul", "cublasStatus_t",
        ["cublasLtHandle_t", "cublasLtMatmulDesc_t", "const void *", "const void *", "cublasLtMatrixLayout_t",
         "const void *", "cublasLtMatrixLayout_t", "const void *", "const void *", "cublasLtMatrixLayout_t", "void *",
         "cublasLtMatrixLayout_t", "const cublasLtMatmulAlgo_t *", "void *", "size_t", "cudaStream_t"])

    static let all: [CFunctionSpec] = [
        cublasLtCreate.spec, cublasLtGetVersion.spec, cublasLtMatmulDescCreate.spec, cublasLtMatmulDescDestroy.spec,
        cublasLtMatmulDescSetAttribute.spec, cublasLtMatrixLayoutCreate.spec, cublasLtMatrixLayoutDestroy.spec,
        cublasLtMatrixLayoutSetAttribute.spec, cublasLtMatmulPreferenceCreate.spec, cublasLtMatmulPreferenceDestroy.spec,
        cublasLtMatmulPreferenceSetAttribute.spec, cublasLtMatmulAlgoGetHeuristic.spec, cublasLtMatmul.spec,
    ]

    static func c(_ header: String, _ name: String, _ value: Int32) -> CConstantSpec {
        CConstantSpec(header: header, name: name, value: value)
    }
    static let transA = c(h, "CUBLASLT_MATMUL_DESC_TRANSA", 3)
    static let transB = c(h, "CUBLASLT_MATMUL_DESC_TRANSB", 4)
    static let epilogue = c(h, "CUBLASLT_MATMUL_DESC_EPILOGUE", 7)
    static let biasPointer = c(h, "CUBLASLT_MATMUL_DESC_BIAS_POINTER", 8)
    static let epilogueDefault = c(h, "CUBLASLT_EPILOGUE_DEFAULT", 1)
    static let epilogueBias = c(h, "CUBLASLT_EPILOGUE_BIAS", 4)
    static let epilogueGelu = c(h, "CUBLASLT_EPILOGUE_GELU", 32)
    static let batchCount = c(h, "CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT", 5)
    static let stridedBatchOffset = c(h, "CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET", 6)
    static let maxWorkspace = c(h, "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES", 1)
    static let minAlignA = c(h, "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES", 5)
    static let minAlignB = c(h, "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES", 6)
    static let minAlignC = c(h, "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES", 7)
    static let minAlignD = c(h, "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES", 8)
    static let opN = c("cublas_api.h", "CUBLAS_OP_N", 0)
    static let opT = c("cublas_api.h", "CUBLAS_OP_T", 1)
    static let compute32F = c("cublas_api.h", "CUBLAS_COMPUTE_32F", 68)
    static let r32F = c("library_types.h", "CUDA_R_32F", 0)
    static let r16BF = c("library_types.h", "CUDA_R_16BF", 14)
    static let constants = [transA, transB, epilogue, biasPointer, epilogueDefault, epilogueBias, epilogueGelu, batchCount,
                            stridedBatchOffset, maxWorkspace, minAlignA, minAlignB, minAlignC, minAlignD, opN, opT, compute32F, r32F, r16BF]
    /// sizeof(cublasLtMatmulHeuristicResult_t): algo (8 × uint64), size_t workspaceSize, status, float, int[4].
    static let heuristicResultBytes = 96
}

/// The loaded cuBLASLt.
struct CublasLt: @unchecked Sendable {
    let library: DynamicLibrary
    let create: @convention(c) (RawPtr?) -> Int32
    let version: @convention(c) () -> Int
    let descCreate: @convention(c) (RawPtr?, Int32, Int32) -> Int32
    let descDestroy: @convention(c) (RawPtr?) -> Int32
    let descSet: @convention(c) (RawPtr?, Int32, CRawPtr?, Int) -> Int32
    let layoutCreate: @convention(c) (RawPtr?, Int32, UInt64, UInt64, Int64) -> Int32
    let layoutDestroy: @convention(c) (RawPtr?) -> Int32
    let layoutSet: @convention(c) (RawPtr?, Int32, CRawPtr?, Int) -> Int32
    let prefCreate: @convention(c) (RawPtr?) -> Int32
    let prefDestroy: @convention(c) (RawPtr?) -> Int32
    let prefSet: @convention(c) (RawPtr?, Int32, CRawPtr?, Int) -> Int32
    let heuristic: @convention(c) (RawPtr?, RawPtr?, RawPtr?, RawPtr?, RawPtr?, RawPtr?, RawPtr?, Int32, RawPtr?, RawPtr?) -> Int32
    let matmul: @convention(c) (RawPtr?, RawPtr?, CRawPtr?, CRawPtr?, RawPtr?, CRawPtr?, RawPtr?, CRawPtr?, CRawPtr?, RawPtr?,
                                RawPtr?, RawPtr?, CRawPtr?, RawPtr?, Int, RawPtr?) -> Int32

    init(_ lib: DynamicLibrary) throws {
        library = lib
        create = try lib.load(CublasLtAPI.cublasLtCreate)
        version = try lib.load(CublasLtAPI.cublasLtGetVersion)
        descCreate = try lib.load(CublasLtAPI.cublasLtMatmulDescCreate)
        descDestroy = try lib.load(CublasLtAPI.cublasLtMatmulDescDestroy)
        descSet = try lib.load(CublasLtAPI.cublasLtMatmulDescSetAttribute)
        layoutCreate = try lib.load(CublasLtAPI.cublasLtMatrixLayoutCreate)
        layoutDestroy = try lib.load(CublasLtAPI.cublasLtMatrixLayoutDestroy)
        layoutSet = try lib.load(CublasLtAPI.cublasLtMatrixLayoutSetAttribute)
        prefCreate = try lib.load(CublasLtAPI.cublasLtMatmulPreferenceCreate)
        prefDestroy = try lib.load(CublasLtAPI.cublasLtMatmulPreferenceDestroy)
        prefSet = try lib.load(CublasLtAPI.cublasLtMatmulPreferenceSetAttribute)
        heuristic = try lib.load(CublasLtAPI.cublasLtMatmulAlgoGetHeuristic)
        matmul = try lib.load(CublasLtAPI.cublasLtMatmul)
    }

    func check(_ status: Int32, _ what: @autoclosure () -> String) throws {
        guard status != 0 else { return }
        throw CUDAError.cublas(what(), status: status)
    }
}

/// Every function and constant the backend binds, for the header check.
public enum CUDABindings {
    public static var functions: [CFunctionSpec] { DriverAPI.all + NVRTCAPI.all + NVJitLinkAPI.all + CublasLtAPI.all }
    public static var constants: [CConstantSpec] { DriverAPI.constants + NVJitLinkAPI.constants + CublasLtAPI.constants }
}

/// Errors of the CUDA backend's library layer.
public enum CUDAError: Error, CustomStringConvertible, Equatable {
    case libraryMissing(String, tried: [String], dlerror: String)
    case symbolMissing(String, library: String)
    case driver(String, code: Int32, message: String)
    case nvrtc(String, log: String)
    case nvJitLink(String, log: String)
    case cublas(String, status: Int32)
    case noDevice(String)

    public var description: String {
        switch self {
        case .libraryMissing(let n, let tried, let e):
            "\(n) was not found (tried \(tried.count) paths, last error: \(e.isEmpty ? "none" : e)); "
                + "install the CUDA driver / toolkit or point HPRUNE_CUDA_LIBS at the folder that holds it"
        case .symbolMissing(let s, let lib):
            "\(lib) does not export \(s); it is too old for hprune (CUDA 12 or newer is needed)"
        case .driver(let what, let code, let msg): "CUDA driver: \(what) failed: \(msg) (CUresult \(code))"
        case .nvrtc(let what, let log): "NVRTC: \(what)\(log.isEmpty ? "" : ":\n" + log)"
        case .nvJitLink(let what, let log): "nvJitLink: \(what)\(log.isEmpty ? "" : ":\n" + log)"
        case .cublas(let what, let status): "cuBLASLt: \(what) failed (cublasStatus_t \(status))"
        case .noDevice(let why): why
        }
    }
}

/// The NUL-terminated text in a C buffer.
func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

// Every driver / NVRTC / nvJitLink / cuBLASLt function the backend binds with dlsym, checked two ways: its declared
// C prototype against the Swift type it is called through (always), and against the headers shipped in NVIDIA's
// wheels (when HPRUNE_CUDA_INCLUDE, or HPRUNE_NVRTC/../include, holds them), enum values included.
import CUDABackend
import Foundation
import Testing

/// The folder with cuda.h, nvrtc.h, nvJitLink.h, cublasLt.h, cublas_api.h, library_types.h.
let cudaIncludeFolder: String? = {
    let env = ProcessInfo.processInfo.environment
    if let d = env["HPRUNE_CUDA_INCLUDE"], !d.isEmpty { return d }
    if let lib = nvrtcFolder { return URL(fileURLWithPath: lib).deletingLastPathComponent().appendingPathComponent("include").path }
    return nil
}()

/// C declarations, normalised: tokens joined by single spaces ("const char * const *").
enum CDecl {
    static let keywords: Set<String> = ["int", "char", "void", "float", "double", "long", "short", "unsigned", "signed"]

    static func tokens(_ s: String) -> [String] {
        let re = try! NSRegularExpression(pattern: #"[A-Za-z_]\w*|\*"#)
        return re.matches(in: s, range: NSRange(s.startIndex..., in: s)).map { String(s[Range($0.range, in: s)!]) }
    }

    /// A parameter's type: its tokens minus a trailing parameter name; an array parameter `T name[]` is `T *`.
    static func paramType(_ p: String) -> String {
        var t = tokens(p)
        if t.count > 1, let last = t.last, last != "*", !keywords.contains(last) { t.removeLast() }
        if p.contains("[]") { t.append("*") }
        return t.joined(separator: " ")
    }

    static func normal(_ s: String) -> String { tokens(s).joined(separator: " ") }

    /// Removes /* */ and // comments.
    static func stripComments(_ s: String) -> String {
        var out = s.replacingOccurrences(of: #"/\*[\s\S]*?\*/"#, with: " ", options: .regularExpression)
        out = out.replacingOccurrences(of: #"//[^\n]*"#, with: " ", options: .regularExpression)
        return out
    }

    /// The first declaration of `name` in `header`: (return type, parameter types).
    static func prototype(_ name: String, in header: String) -> (String, [String])? {
        let pattern = #"([A-Za-z_][\w \t\*]*?)\s*\b"# + name + #"\s*\(([^()]*)\)\s*[;{]"#
        let re = try! NSRegularExpression(pattern: pattern)
        guard let m = re.firstMatch(in: header, range: NSRange(header.startIndex..., in: header)) else { return nil }
        var ret = String(header[Range(m.range(at: 1), in: header)!])
        for word in ["CUDAAPI", "CUBLASWINAPI", "static", "inline", "extern", "NVRTC_API"] {
            ret = ret.replacingOccurrences(of: #"\b\#(word)\b"#, with: " ", options: .regularExpression)
        }
        let params = String(header[Range(m.range(at: 2), in: header)!]).split(separator: ",").map { paramType(String($0)) }
        return (normal(ret), params)
    }

    /// The Swift type each C type is called through (the rule CUDALibraries.swift follows).
    static func swiftType(_ c: String, isReturn: Bool = false) -> String? {
        let t = normal(c)
        let stars = t.split(separator: " ").filter { $0 == "*" }.count
        if t == "const char *" && isReturn { return "Optional<UnsafePointer<Int8>>" }
        if t == "void * *" || t == "void **" { return "Optional<UnsafeMutablePointer<Optional<UnsafeMutableRawPointer>>>" }
        if stars > 0 {
            // Mutable unless the outermost pointee is const ("const void *", "const char * const *").
            let beforeLastStar = t.components(separatedBy: " ").dropLast().joined(separator: " ")
            let outerConst = stars == 1 ? t.hasPrefix("const") : beforeLastStar.hasSuffix("const")
            return outerConst ? "Optional<UnsafeRawPointer>" : "Optional<UnsafeMutableRawPointer>"
        }
        switch t {
        case "CUresult", "nvrtcResult", "nvJitLinkResult", "cublasStatus_t", "int", "CUdevice", "CUdevice_attribute",
             "CUfunction_attribute", "cublasComputeType_t", "cudaDataType_t", "cudaDataType", "nvJitLinkInputType",
             "cublasLtMatmulDescAttributes_t", "cublasLtMatrixLayoutAttribute_t", "cublasLtMatmulPreferenceAttributes_t":
            return "Int32"
        case "unsigned int", "uint32_t": return "UInt32"
        case "unsigned char": return "UInt8"
        case "size_t": return "Int"
        case "CUdeviceptr", "uint64_t": return "UInt64"
        case "int64_t": return "Int64"
        case "CUcontext", "CUmodule", "CUfunction", "CUstream", "cudaStream_t", "nvrtcProgram", "nvJitLinkHandle",
             "cublasLtHandle_t", "cublasLtMatmulDesc_t", "cublasLtMatrixLayout_t", "cublasLtMatmulPreference_t":
            return "Optional<UnsafeMutableRawPointer>"
        default: return nil
        }
    }
}

@Suite("CUDA bindings: C prototypes ↔ Swift types ↔ NVIDIA headers")
struct BindingTests {
    @Test("every bound function's Swift type follows from its C prototype")
    func swiftTypesMatchPrototypes() {
        #expect(CUDABindings.functions.count >= 50)
        for f in CUDABindings.functions {
            let params = f.params == ["void"] ? [] : f.params
            let mapped = params.map { CDecl.swiftType($0) }
            guard let ret = CDecl.swiftType(f.returns, isReturn: true), !mapped.contains(where: { $0 == nil }) else {
                Issue.record("\(f.name): a C type has no Swift mapping: \(f)")
                continue
            }
            let want = "@convention(c) (\(mapped.map { $0! }.joined(separator: ", "))) -> \(ret)"
            #expect(f.swiftType == want, "\(f.name): Swift type \(f.swiftType), but \(f) calls for \(want)")
        }
    }

    @Test("skipped without the wheels' headers (says so)", .enabled(if: cudaIncludeFolder == nil))
    func skipped() {
        print("CUDA header check skipped: set HPRUNE_CUDA_INCLUDE (or HPRUNE_NVRTC) after Tests/GPU/fetch-nvrtc.sh")
    }

    static func header(_ name: String) throws -> String {
        CDecl.stripComments(try String(contentsOfFile: "\(cudaIncludeFolder!)/\(name)", encoding: .utf8))
    }

    @Test("every bound function is declared so in its header", .enabled(if: cudaIncludeFolder != nil))
    func prototypesMatchHeaders() throws {
        var headers: [String: String] = [:]
        for f in CUDABindings.functions {
            if headers[f.header] == nil { headers[f.header] = try Self.header(f.header) }
            let text = headers[f.header]!
            guard let (ret, params) = CDecl.prototype(f.name, in: text) else {
                Issue.record("\(f.name) is not declared in \(f.header)")
                continue
            }
            #expect(ret == CDecl.normal(f.returns), "\(f.name): header returns '\(ret)', we declare '\(f.returns)'")
            #expect(params == f.params.map(CDecl.normal), "\(f.name): header takes \(params), we declare \(f.params)")
            // The exported symbol: the macro target (cuda.h), or a versioned entry point (nvJitLink).
            if f.header == "cuda.h", f.symbols[0] != f.name {
                let define = #"#define\s+"# + f.name + #"\s+(__CUDA_API_PTDS\()?"# + f.symbols[0] + #"\b"#
                #expect(text.range(of: define, options: .regularExpression) != nil, "\(f.name) is not #defined to \(f.symbols[0])")
            }
            if f.header == "nvJitLink.h" {
                #expect(text.contains("__\(f.name)_12_") || text.contains("__\(f.name)_13_"), "\(f.name): no versioned entry point")
            }
        }
    }

    @Test("every enum value we pass matches its header", .enabled(if: cudaIncludeFolder != nil))
    func constantsMatchHeaders() throws {
        for c in CUDABindings.constants {
            let text = try Self.header(c.header)
            let re = try NSRegularExpression(pattern: #"\b"# + c.name + #"\s*=\s*(\d+)"#)
            if let m = re.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) {
                #expect(Int32(text[Range(m.range(at: 1), in: text)!]) == c.value, "\(c.name) in \(c.header)")
            } else if c.name == "NVJITLINK_INPUT_PTX" {
                // Declared implicitly after NVJITLINK_INPUT_CUBIN = 1.
                #expect(text.range(of: #"NVJITLINK_INPUT_CUBIN\s*=\s*1\s*,\s*NVJITLINK_INPUT_PTX\b"#, options: .regularExpression) != nil)
            } else {
                Issue.record("\(c.name) is not defined in \(c.header)")
            }
        }
    }
}

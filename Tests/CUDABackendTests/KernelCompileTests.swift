// Compile check of every CUDA kernel family, no GPU needed: NVRTC to PTX (compute_80/89/90) and nvJitLink to a
// cubin (sm_80/89/90), with the libraries from NVIDIA's PyPI wheels. Runs when HPRUNE_NVRTC points at them
// (Tests/GPU/fetch-nvrtc.sh); otherwise it says it was skipped.
import CUDABackend
import Foundation
import Testing

/// The folder with libnvrtc / libnvJitLink, when the compile check can run.
let nvrtcFolder: String? = ProcessInfo.processInfo.environment["HPRUNE_NVRTC"].flatMap { $0.isEmpty ? nil : $0 }

@Suite("CUDA kernels compile with NVRTC and link with nvJitLink (sm_80, sm_89, sm_90)")
struct KernelCompileTests {
    static let archs = [80, 89, 90]

    @Test("skipped without HPRUNE_NVRTC (says so)", .enabled(if: nvrtcFolder == nil))
    func skipped() {
        print("CUDA kernel compile check skipped: HPRUNE_NVRTC is not set (run Tests/GPU/fetch-nvrtc.sh, then export HPRUNE_NVRTC=.whl/lib)")
    }

    @Test("every family → PTX → cubin", .enabled(if: nvrtcFolder != nil), arguments: KernelFamily.all.map(\.name))
    func family(name: String) throws {
        let compiler = try KernelCompiler()
        let family = KernelFamily.all.first { $0.name == name }!
        for arch in Self.archs {
            let ptx = try compiler.ptx(family, arch: arch)
            let text = String(decoding: ptx.prefix { $0 != 0 }, as: UTF8.self)
            #expect(text.contains(".target sm_\(arch)"), "\(name): PTX for compute_\(arch) names its target")
            for k in family.kernels {
                #expect(text.contains(".entry \(k)("), "\(name): kernel \(k) is missing from the PTX for compute_\(arch)")
            }
            let cubin = try compiler.cubin(ptx: ptx, arch: arch, name: name)
            #expect(cubin.count > 1000 && Array(cubin.prefix(4)) == [0x7F, 0x45, 0x4C, 0x46], "\(name): sm_\(arch) cubin is an ELF file")
        }
    }

    @Test("the Philox kernel is compiled without FMA contraction", .enabled(if: nvrtcFolder != nil))
    func philoxNoFMA() throws {
        let compiler = try KernelCompiler()
        let family = KernelFamily.all.first { $0.name == "philox" }!
        let text = String(decoding: try compiler.ptx(family, arch: 90).prefix { $0 != 0 }, as: UTF8.self)
        #expect(!text.contains("fma.rn.f64"), "a fused multiply-add would change bits against Philox.swift")
    }

    @Test("compiled cubins are cached by hash and reused", .enabled(if: nvrtcFolder != nil))
    func cache() throws {
        let dir = NSTemporaryDirectory() + "hprune-kcache-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let compiler = try KernelCompiler(), cache = KernelCache(directory: dir)
        let family = KernelFamily.all.first { $0.name == "reduction" }!
        let a = try compiler.cachedCubin(family, arch: 90, cache: cache)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".cubin") }
        #expect(files.count == 1)
        let b = try compiler.cachedCubin(family, arch: 90, cache: cache)
        #expect(a == b)
        #expect(KernelCache.key(["x", "sm_90"]) != KernelCache.key(["x", "sm_89"]))
    }
}

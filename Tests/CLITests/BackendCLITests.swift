// `hprune backends`, `hprune selftest` and `--backend cuda` through the real binary on a machine without a usable
// GPU: CUDA is listed as unavailable and unverified, selftest checks the CPU backend and refuses CUDA with the
// reason, and a recipe asked to run on CUDA stops before planning (exit 2).
import Foundation
import Testing
import TestSupport

/// True when the NVIDIA driver library cannot be loaded here (these tests describe that machine).
private let noDriver: Bool = {
    guard let h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL) else { return true }
    dlclose(h)
    return false
}()

@Suite("CLI: backends and selftest")
struct BackendCLITests {
    @Test("backends lists cuda first, unavailable and unverified on a GPU", .enabled(if: noDriver))
    func backendsJSON() throws {
        let r = try CLI.run(["backends", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let list = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        #expect(list.map { $0["name"] as? String } == ["cuda", "cpu", "reference"])
        #expect(list[0]["available"] as? Bool == false)
        #expect((list[0]["reason"] as? String)?.contains("unverified on a GPU") == true)
    }

    @Test("selftest --backend cpu checks every op and exits 0")
    func selftestCPU() throws {
        let r = try CLI.run(["selftest", "--backend", "cpu", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect((o["passed"] as? [String])?.count == 37)
        #expect((o["failed"] as? [String: Any])?.isEmpty == true)
        #expect((o["sizes"] as? [String]) == ["n=1 rows=3", "n=7 rows=3", "n=65 rows=3"])
    }

    @Test("selftest --backend cuda without a GPU exits 1 with the reason; an unknown backend exits 2", .enabled(if: noDriver))
    func selftestCUDAUnavailable() throws {
        let r = try CLI.run(["selftest", "--backend", "cuda"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("libcuda.so.1"), "\(r.stderr)")
        let u = try CLI.run(["selftest", "--backend", "tpu"])
        #expect(u.status == 2)
        #expect(u.stderr.contains("choose one of: cuda, cpu, reference"), "\(u.stderr)")
    }

    @Test("plan --backend cuda without a GPU is invalid input (exit 2) and says why", .enabled(if: noDriver))
    func planOnCUDA() throws {
        let dir = TemporaryDirectory()
        let recipe = dir.write("r.yaml", """
            recipe: 1
            name: on-cuda
            models: { teacher: { format: diffusers, path: \(repositoryRoot().path)/recipes/digits/teacher } }
            stages:
              prune: { kind: prune, model: teacher, remove: "10-11" }
            """)
        let r = try CLI.run(["plan", recipe, "--backend", "cuda", "--store", dir.path + "/store"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("backend 'cuda' is not available") && r.stderr.contains("--backend cpu"), "\(r.stderr)")
    }
}

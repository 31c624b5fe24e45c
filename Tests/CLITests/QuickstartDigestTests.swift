// The quickstart's artifact digests, pinned: a change that alters any stage's numerics or outputs shows here (and
// must bump that kind's version or a kernel family's numerics version). The digests depend on the CPU kernel family
// (another family rounds differently — which is why the family is part of every backend stage's key), so they are
// pinned per family: the full quickstart on the family `auto` picks on the machines this project runs on (avx2 on
// the 2-core AMD EPYC, whose VM exposes no AVX-512), and a shrunk quickstart on the scalar family, which every x86-64
// CPU runs. Pinned from the binary of commit f46cc35, before keys carried numerics (only keys changed since).
// `evaluate` runs without `memory` and `latency`: they measure the process, so its report differs between runs.
import Foundation
import Testing
import TestSupport

private let quickstart = repositoryRoot().appendingPathComponent("recipes/quickstart.yaml").path

private func digests(_ r: CLIResult) -> [String: String] {
    let list = (jsonObject(r.stdout)?["stages"] as? [[String: Any]]) ?? []
    return Dictionary(list.compactMap { s in
        guard let name = s["name"] as? String, let outs = s["outputs"] as? [String: String], outs.count == 1 else { return nil }
        return (name, outs.values.first!)
    }, uniquingKeysWith: { a, _ in a })
}

/// The family `auto` picks here (`hprune backends --json`).
private func autoFamily() -> String {
    guard let r = try? CLI.run(["backends", "--json"]),
          let list = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [[String: Any]],
          let cpu = list.first(where: { $0["name"] as? String == "cpu" }) else { return "" }
    return ((cpu["kernels"] as? [String: Any])?["selected"] as? String) ?? ""
}

/// recipes/quickstart.yaml as it is, evaluate's metrics limited to the reproducible ones, by family.
private let fullPins: [String: [String: String]] = [
    "avx2": [
        "teacher": "661f144c150f3621f54b4852d62577a2298a883aa7c4f12c86139342fc76e66d",
        "score": "f7417dfab40d81b0059e75e2ccc584aacb1a59e448b5f06cd535d63752ddf989",
        "prune": "835c083e1f128e7a112dd7e734965ce7662676f9f01a722ee3dc8a03d8e13c96",
        "freeze": "4d43f1b24aa8de0281b9b8dc233a59340143d8205ccee633205da59cb09d6604",
        "distill": "a0e20734fca960278c7f5ca06c84f49f39b2eba7c2de4f64fce4c0b4a3091cdd",
        "quantise": "958c6e26945d1e47a843642447db85ea8b125a9bda4c429a5768e8342ad45af8",
        "evaluate": "5c4cdd7431a33fc26ff8770b1773b257ab82b79a519d2f9a28eb531914989019",
    ],
]

/// The quickstart shrunk as the Slurm test shrinks it, on HPRUNE_ISA=scalar.
private let scalarPins: [String: String] = [
    "teacher": "eb646d5cbb24a173bb1b2e2ebdbdd36ed6d3112219256f98d69bd8164dd9cff6",
    "score": "7868aa237491e3ba7b2af2ec7efd826c27ff462723cd105f9378dbb7d8fbac71",
    "prune": "4c3ae9e93e1eb6788dba7af2fc0fc121d38b087dc956f074904f4ba8c7d9d419",
    "freeze": "f7fd87c08cda2def6700e6f72f035ec90b7078d54b3df9377eb2adb59d1ebea0",
    "distill": "59eb8f69e5d7a0c4d06b766da9dad48ed0a5b3137fc0244e4d50a24004af4158",
    "quantise": "f69ad179bd82f11f117f583c481e41a6ba3eb6065d9d4fa13633e02e9fdfc28b",
    "evaluate": "f3f274e1598c598a4d73f60c7c84defd20d3485e108787dd614e231d221fb6e1",
]

private let reproducibleEvaluate = ["--set", "stages.evaluate.metrics=[fidelity, task]"]

@Suite("CLI: the quickstart's digests")
struct QuickstartDigestTests {
    @Test("the full quickstart on the automatic family", .enabled(if: fullPins[autoFamily()] != nil))
    func fullQuickstart() throws {
        let dir = TemporaryDirectory()
        let r = try CLI.run(["run", quickstart, "--store", dir.path + "/s", "--json"] + reproducibleEvaluate, timeout: 1200)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(digests(r) == fullPins[autoFamily()], "\(r.stdout)")
    }

    #if arch(x86_64)
    @Test func shrunkQuickstartOnTheScalarFamily() throws {
        let dir = TemporaryDirectory()
        let small = ["--set", "vars.teacher_steps=4", "--set", "vars.distill_steps=4", "--set", "stages.score.samples=2",
                     "--set", "stages.evaluate.samples=2"] + reproducibleEvaluate
        let r = try CLI.run(["run", quickstart, "--store", dir.path + "/s", "--json"] + small,
                            environment: ["HPRUNE_ISA": "scalar"], timeout: 600)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(digests(r) == scalarPins, "\(r.stdout)")
    }
    #endif
}

// `evaluate` through real recipes: memory / latency / fidelity / task metrics in the ledger and the Report,
// fidelity of a model against itself is exact, a pruned and a quantised model differ from the teacher, and
// bad input (task metric without targets, sample grids of latent-space models) names the stage.

import ArtifactStore
import Foundation
import Scheduler
@testable import Stages
import TestSupport
import Testing

@Suite struct EvaluateStageTests {
    @Test func metricsSideBySide() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, j: 24, p: 12, latents: [4, 8, 8], labels: true)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: e
            seed: 3
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              prune: { kind: prune, model: teacher, remove: "1-2" }
              quantise: { kind: quantise, model: teacher, format: nf4, block_size: 64 }
              evaluate:
                kind: evaluate
                models: { original: teacher, same: teacher, pruned: prune, nf4: quantise }
                data: calib
                metrics: [memory, latency, fidelity, task]
                batch: 2
                repeats: 2
                warmup: 0
                sampling: { steps: 2 }
            """)
        let r = try #require(run.result("evaluate"))
        #expect(r.status == .ran, "\(r.error ?? "")")
        func m(_ n: String) -> Double? { metric(r, n) }
        // Memory: the pruned model stores fewer bytes; the nf4 one stores nf4 codes.
        let wb = try #require(m("original.weight_bytes")), pb = try #require(m("pruned.weight_bytes")), qb = try #require(m("nf4.weight_bytes"))
        #expect(pb < wb && qb < wb)
        #expect((m("nf4.weight_bytes.nf4") ?? 0) > 0 && m("original.weight_bytes.nf4") == nil)
        #expect((m("pruned.params") ?? 0) < (m("original.params") ?? 0))
        #expect(m("original.runtime_bytes") != nil)
        // Latency: positive, per sample = per step · steps / batch.
        let step = try #require(m("original.latency_step")), sample = try #require(m("original.latency_sample"))
        #expect(step > 0 && abs(sample - step * 2 / 2) < 1e-9)
        // Fidelity: a model against itself is exact; pruning and nf4 move the latents.
        #expect(m("same.latent_mse") == 0 && m("same.cosine") == 1 && m("same.psnr") == 100)
        #expect((m("pruned.latent_mse") ?? 0) > 0 && (m("pruned.cosine") ?? 1) < 1)
        let q = try #require(m("nf4.latent_mse"))
        #expect(q > 0 && q < (m("pruned.latent_mse") ?? 0))
        #expect(m("original.latent_mse") == nil)   // the reference itself
        // Task: the flow loss on the dataset's latents; equal for equal models.
        #expect((m("original.task_flow_loss") ?? 0) > 0 && m("original.task_flow_loss") == m("same.task_flow_loss"))
        #expect(m("original.task_labels") == 2)

        // The Report artifact.
        let digest = try #require(r.outputs["report"])
        let report = try #require(try JSONSerialization.jsonObject(with: try run.store.data(digest)) as? [String: Any])
        #expect(report["kind"] as? String == "hprune.report" && report["backend"] as? String == "cpu" && report["reference"] as? String == "original")
        let models = try #require(report["models"] as? [String: Any])
        #expect(Set(models.keys) == ["original", "same", "pruned", "nf4"])
        let nf4 = try #require(models["nf4"] as? [String: Any])
        #expect(nf4["quantisation"] as? String == "nf4")
        let nm = try #require(nf4["metrics"] as? [String: [String: Any]])
        #expect(abs(((nm["latent_mse"]?["value"] as? NSNumber)?.doubleValue ?? 0) - q) <= 1e-12 * q)
    }

    @Test func memoryOnlyNeedsNoDataAndTaskNeedsTargets() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("flux_tiny", into: dir)
        let data = try writeDataset(dir, j: 24, p: 12)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: e
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              mem: { kind: evaluate, models: { t: teacher }, metrics: [memory] }
            """)
        #expect(run.result("mem")?.status == .ran)
        #expect((metric(run.result("mem"), "t.weight_bytes.f32") ?? 0) > 0)
        #expect(metric(run.result("mem"), "t.runtime_bytes") == nil)   // no data: nothing was run

        let bad = try await runRecipe(dir, """
            recipe: 1
            name: e
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              task: { kind: evaluate, models: { t: teacher }, data: calib, metrics: [task] }
            """)
        let msg = bad.result("task")?.error ?? ""
        #expect(bad.result("task")?.status == .failed)
        #expect(msg.contains("stage 'task' (") && msg.contains("r.yaml:") && msg.contains("latents"), "\(msg)")
    }

    @Test func classifierTaskMetrics() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, n: 6, j: 24, p: 12, latents: [4, 8, 8], labels: true)
        let plain = try writeDataset(dir, name: "plain.safetensors", n: 6, j: 24, p: 12, latents: [4, 8, 8])
        let run = try await runRecipe(dir, """
            recipe: 1
            name: e
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              prune: { kind: prune, model: teacher, remove: "1-2" }
              evaluate:
                kind: evaluate
                models: { original: teacher, same: teacher, pruned: prune }
                data: calib
                metrics: [task]
                classifier: { data: calib, hidden: 8, epochs: 20 }
                batch: 3
                sampling: { steps: 2 }
            """)
        let r = try #require(run.result("evaluate"))
        #expect(r.status == .ran, "\(r.error ?? "")")
        func m(_ n: String) -> Double? { metric(r, n) }
        let held = try #require(m("classifier.heldout_accuracy"))
        #expect(held >= 0 && held <= 1)
        let acc = try #require(m("original.prompt_accuracy")), fd = try #require(m("original.frechet"))
        #expect(acc >= 0 && acc <= 1 && fd >= 0)
        // The same model scores the same; degradation is relative to the first model.
        #expect(m("same.prompt_accuracy") == acc && m("same.frechet") == fd && m("original.degradation") == 0 && m("same.degradation") == 0)
        let pa = try #require(m("pruned.prompt_accuracy")), pd = try #require(m("pruned.degradation"))
        #expect(acc == 0 ? pd == 0 : abs(pd - 100 * (acc - pa) / acc) < 1e-9)

        // Without labels in the held-out data the stage says what is missing.
        let bad = try await runRecipe(dir, """
            recipe: 1
            name: e
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors }, plain: { path: \(plain), format: safetensors } }
            stages:
              evaluate: { kind: evaluate, models: { t: teacher }, data: plain, metrics: [task], classifier: { data: calib } }
            """)
        let msg = bad.result("evaluate")?.error ?? ""
        #expect(bad.result("evaluate")?.status == .failed && msg.contains("labels"), "\(msg)")
    }

    @Test func groupsSplitTaskMetricsByLabel() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, n: 6, j: 24, p: 12, latents: [4, 8, 8], labels: true)   // labels 0, 1, 0, 1, 0, 1
        func recipe(_ extra: String) -> String {
            """
            recipe: 1
            name: e
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              prune: { kind: prune, model: teacher, remove: "1-2" }
              evaluate:
                kind: evaluate
                models: { original: teacher, same: teacher, pruned: prune }
                data: calib
                metrics: [task]
                classifier: { data: calib, hidden: 8, epochs: 20 }
                batch: 3
                sampling: { steps: 2 }
            \(extra)
            """
        }
        let run = try await runRecipe(dir, recipe("    groups: { even: [0], odd: [1], both: [0, 1] }"))
        let r = try #require(run.result("evaluate"))
        #expect(r.status == .ran, "\(r.error ?? "")")
        func m(_ n: String) -> Double? { metric(r, n) }
        for model in ["original", "same", "pruned"] {
            let acc = try #require(m("\(model).prompt_accuracy")), fd = try #require(m("\(model).frechet"))
            // A group of every label is the overall metric exactly (same samples, same real images, same order).
            #expect(m("\(model).prompt_accuracy.both") == acc && m("\(model).frechet.both") == fd)
            // Two groups of 3 samples each: the overall accuracy is their mean.
            let even = try #require(m("\(model).prompt_accuracy.even")), odd = try #require(m("\(model).prompt_accuracy.odd"))
            #expect(abs(acc - (even + odd) / 2) < 1e-12)
            #expect((m("\(model).frechet.even") ?? -1) >= 0 && (m("\(model).frechet.odd") ?? -1) >= 0)
        }
        // Group degradation is relative to the first model's value for that group.
        for g in ["even", "odd", "both"] {
            #expect(m("original.degradation.\(g)") == 0 && m("same.degradation.\(g)") == 0)
            #expect(m("same.prompt_accuracy.\(g)") == m("original.prompt_accuracy.\(g)") && m("same.frechet.\(g)") == m("original.frechet.\(g)"))
            let ref = try #require(m("original.prompt_accuracy.\(g)")), pa = try #require(m("pruned.prompt_accuracy.\(g)"))
            let pd = try #require(m("pruned.degradation.\(g)"))
            #expect(ref == 0 ? pd == 0 : abs(pd - 100 * (ref - pa) / ref) < 1e-9)
        }
        #expect(m("pruned.degradation.both") == m("pruned.degradation"))

        // Without `groups`: no group metrics, the same overall numbers (an additive option).
        let dir2 = TemporaryDirectory()
        _ = try copyModel("sd3_tiny", into: dir2)
        _ = try writeDataset(dir2, n: 6, j: 24, p: 12, latents: [4, 8, 8], labels: true)
        let plain = try await runRecipe(dir2, recipe(""))
        let pr = try #require(plain.result("evaluate"))
        #expect(pr.status == .ran, "\(pr.error ?? "")")
        #expect(!pr.metrics.contains { $0.name.hasSuffix(".even") || $0.name.hasSuffix(".both") })
        for name in ["original.prompt_accuracy", "pruned.prompt_accuracy", "pruned.frechet", "pruned.degradation"] {
            #expect(metric(pr, name) == m(name), "\(name)")
        }

        // A group whose labels are not in the data names the stage and the fix.
        let bad = try await runRecipe(dir, recipe("    groups: { missing: [7] }"))
        let msg = (bad.result("evaluate")?.error ?? "") + (bad.result("evaluate")?.log ?? "")
        #expect(bad.result("evaluate")?.status == .failed && msg.contains("group 'missing'") && msg.contains("r.yaml:"), "\(msg)")
        // `groups` without `classifier` is rejected before anything runs.
        do {
            _ = try await runRecipe(dir, """
                recipe: 1
                name: e
                models: { teacher: { path: \(teacher) } }
                datasets: { calib: { path: \(data), format: safetensors } }
                stages:
                  evaluate: { kind: evaluate, models: { t: teacher }, data: calib, metrics: [task], groups: { a: [0] } }
                """)
            Issue.record("a recipe with 'groups' but no 'classifier' was accepted")
        } catch {
            #expect("\(error)".contains("'groups'") && "\(error)".contains("classifier"), "\(error)")
        }
    }

    @Test func imagesNeedPixelSpaceModels() async throws {
        // sd3_tiny samples 4-channel latents: `images` fails at run time, naming the stage's place and the fix.
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, j: 24, p: 12, latents: [4, 8, 8], labels: true)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: e
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              evaluate: { kind: evaluate, models: { t: teacher }, data: calib, metrics: [memory], images: { columns: 2 } }
              plain: { kind: evaluate, models: { t: teacher }, metrics: [memory] }
            """)
        let r = try #require(run.result("evaluate"))
        let msg = (r.error ?? "") + (r.log ?? "")
        #expect(r.status == .failed)
        #expect(msg.contains("stage 'evaluate' (") && msg.contains("r.yaml:") && msg.contains("pixel-space") && msg.contains("[4, 8, 8]"), "\(msg)")
        #expect(msg.contains("fix: remove 'images'"), "\(msg)")
        // Without `images` there is no `samples` port.
        #expect(run.result("plain")?.outputs.keys.sorted() == ["report"])
        #expect(EvaluateStage().outputs(params: .map([("images", .map([]))])).map(\.name) == ["report", "samples"])
    }

    @Test func sampleGridRowsAreClassesInLabelOrder() throws {
        // Six 1×1 samples with labels [2, 0, 2, 0, 2, 1]: rows 0, 1, 2; at most 2 columns.
        let samples: [[Float]] = [[1], [-1], [0.5], [-0.5], [0], [1]]
        let g = try EvaluateStage.sampleGrid(samples, labels: [2, 0, 2, 0, 2, 1], shape: [1, 1, 1], columns: 2, rows: 10, scale: 1)
        #expect(g.width == 5 && g.height == 7)
        func px(_ c: Int, _ r: Int) -> UInt8 { g.pixels[(1 + 2 * r) * g.width + 1 + 2 * c] }
        #expect([px(0, 0), px(1, 0)] == [0, 64])        // class 0: samples 1 and 3
        #expect([px(0, 1), px(1, 1)] == [255, 128])     // class 1: one sample, then an empty (grey) cell
        #expect([px(0, 2), px(1, 2)] == [255, 191])     // class 2: samples 0 and 2 (not 4: two columns)
        // Unlabelled: runs of `columns` in order, at most `rows` rows.
        let u = try EvaluateStage.sampleGrid(samples, labels: nil, shape: [1, 1, 1], columns: 4, rows: 1, scale: 1)
        #expect(u.width == 9 && u.height == 3)
    }
}

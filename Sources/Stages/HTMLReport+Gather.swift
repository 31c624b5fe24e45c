// Collects what `hprune report --html` shows of one run from the ledger and the store: the stage executions, the
// score stage's Sensitivity, the prune / freeze / distill models' `structure` records, the training stages' loss
// curves (their logs), the metrics, and the evaluate stage's sample grids. A cached stage's metrics and log come
// from the execution that ran it (same action key).

import ArtifactStore
import Compression
import Foundation
import ModelStore

extension HTMLReport {
    /// A failure to read something a run's ledger entry points at, naming the run, the stage and the artifact.
    public struct GatherError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The page's data for `record`. `evaluateStage` names the stage whose metrics and `samples` are shown.
    public static func gather(store: ArtifactStore, record: RunRecord, evaluateStage: String = "evaluate") throws -> RunData {
        var data = RunData(label: record.start.recipeName, id: record.id.rawValue)
        data.recipePath = record.start.recipePath
        data.status = record.status.rawValue
        let own = try store.ledger.metrics(of: record.id)
        for e in try store.ledger.stages(of: record.id) {
            data.stages.append(StageInfo(name: e.stage, kind: e.kind, status: e.status.rawValue, seconds: e.seconds))
            // Metrics and log: this run's if the stage ran here, else those of the execution that ran it.
            var metrics = own.filter { $0.stage == e.stage }
            var log = e.stdoutTail
            if e.status == .cached, let ran = try store.ledger.lastRan(key: e.key) {
                metrics = ran.metrics.map { Metric(run: record.id, stage: e.stage, name: $0.name, value: $0.value, unit: $0.unit) }
                log = ran.execution.stdoutTail
            }
            data.metrics += metrics
            guard e.status == .ran || e.status == .cached else { continue }
            func fail(_ what: String, _ error: any Error) -> GatherError {
                GatherError(description: "run \(record.id.rawValue), stage '\(e.stage)': cannot read \(what) (\(error)); `hprune run` the recipe again to recreate it")
            }
            switch e.kind {
            case "score":
                guard let d = e.outputs["scores"] else { continue }
                do {
                    data.sensitivity = (e.stage, try Sensitivity.decode(try store.data(d), source: "run \(record.id.rawValue) stage '\(e.stage)' scores \(d.short)"))
                } catch { throw fail("its Sensitivity \(d.short)", error) }
            case "prune", "freeze", "distill":
                guard let d = e.outputs["model"] else { continue }
                let m: ModelManifest
                do { m = try ModelStore.manifest(d, store: store) } catch { throw fail("its model manifest \(d.short)", error) }
                switch e.kind {
                case "prune": data.removed = (e.stage, m.structure.removed)
                case "freeze": data.frozen = (e.stage, m.structure.frozenBlocks, m.structure.frozenPrefixes)
                default: if let s = m.structure.sgdistill { data.sgdistill = (e.stage, s) }
                }
            default: break
            }
            if e.kind == "distill" || e.kind == "train", let c = parseLossCurve(log) {
                data.lossCurves.append(LossCurve(stage: e.stage, kind: e.kind, every: c.every, points: c.points))
            }
            if e.stage == evaluateStage, let d = e.outputs["samples"] {
                let tree: Tree
                do { tree = try store.readTree(d) } catch { throw fail("its sample grids \(d.short)", error) }
                // Models in the table's order, then any others by name.
                var grids: [String: Digest] = [:]
                for entry in tree.entries where entry.path.hasSuffix(".png") && !entry.path.contains("/") {
                    grids[String(entry.path.dropLast(4))] = entry.digest
                }
                let ordered = ResultsTable.models(metrics, stage: e.stage).filter { grids[$0] != nil }
                for model in ordered + grids.keys.filter({ !ordered.contains($0) }).sorted() {
                    guard let g = grids[model] else { continue }
                    do { data.samples.append(SampleGrid(model: model, digest: g.hex, png: [UInt8](try store.data(g)))) } catch {
                        throw fail("the sample grid \(model).png (\(g.short))", error)
                    }
                }
            }
        }
        return data
    }
}

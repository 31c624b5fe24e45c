// `score` and `evaluate` read their params as typed `Params` (decoded once, defaults from the schema): every
// choice value of the schema decodes to its own enum case (no string switch with a `default:` that quietly summed
// MSE for a metric it did not name), defaults come from the schema alone, and the derived settings (the compared
// metric of `additive`, the Sensitivity's metric name) have one definition each.

import Compression
import ModelSpec
import StageGraph
import Stages
import Testing

@Suite struct ScoreEvaluateParamsTests {
    func choices(_ kind: some StageKindDescription, _ path: [String]) throws -> [String] {
        var schema = kind.schema
        for p in path.dropLast() {
            guard case .object(let s)? = schema.field(p)?.type else { Issue.record("no object \(p)"); return [] }
            schema = s
        }
        switch schema.field(path.last!)?.type {
        case .choice(let c)?: return c
        case .list(.choice(let c), _)?: return c
        default: Issue.record("\(path) is not a choice"); return []
        }
    }

    @Test func everyScoreChoiceIsItsOwnCase() throws {
        let k = ScoreStage()
        #expect(try choices(k, ["metric"]) == ScoreMetric.allCases.map(\.rawValue))
        #expect(try choices(k, ["method"]) == ScoreMethod.allCases.map(\.rawValue))
        #expect(try choices(k, ["import", "format"]) == ScoreFileFormat.allCases.map(\.rawValue))
        #expect(try choices(k, ["components"]) == SubComponent.allCases.map(\.rawValue))
        for m in ScoreMetric.allCases {
            let p = try k.decodeParams(.map([("model", .reference("teacher")), ("metric", .string(m.rawValue))]))
            #expect(p.metric == m && p.comparedMetric == m && p.sensitivityMetric == m.rawValue)
        }
        let named: [ScoreMethod: (ScoreMetric, String)] = [.remove: (.psnr, "psnr"), .cosine: (.psnr, "cosine-similarity"),
                                                            .taylor: (.psnr, "taylor"), .additive: (.velocityMSE, "additive")]
        for m in ScoreMethod.allCases {
            let p = try k.decodeParams(.map([("model", .reference("teacher")), ("method", .string(m.rawValue)), ("metric", .string("psnr"))]))
            let want = try #require(named[m])
            #expect(p.method == m && p.comparedMetric == want.0 && p.sensitivityMetric == want.1, "\(m)")
        }
    }

    @Test func scoreDefaultsComeFromTheSchema() throws {
        let p = try ScoreStage().decodeParams(.map([("model", .reference("teacher")), ("scorer", .map([("run", .list([.string("s")]))]))]))
        #expect(p.model == "teacher" && p.data == nil && p.samples == nil && p.batch == 4)
        #expect(p.method == .remove && p.metric == .sampleMSE && p.components == [.block])
        #expect(p.sampling.steps == 4 && p.sampling.guidance == 0 && p.sampling.shift == 3)
        #expect(p.velocity.sigmas == [0.25, 0.5, 0.75] && p.taylor.timesteps == 10 && p.taylor.threshold == 0.05)
        #expect(p.positionWeight == PositionWeight(form: .exponential, rate: -1) && p.latentSize == nil && p.import == nil)
        #expect(p.scorer?.run == ["s"] && p.scorer?.deps == nil && p.fileDependencies.isEmpty)
    }

    @Test func evaluateParamsKeepTheModelOrderAndTheSchemaDefaults() throws {
        let k = EvaluateStage()
        #expect(try choices(k, ["metrics"]) == EvaluationMetric.allCases.map(\.rawValue))
        #expect(try choices(k, ["degradation"]) == TaskMetric.allCases.map(\.rawValue))
        let p = try k.decodeParams(.map([("models", .map([("teacher", .reference("t")), ("compressed", .reference("q.model")), ("a", .reference("p"))])),
                                         ("classifier", .map([("data", .reference("train"))]))]))
        #expect(p.models.names == ["teacher", "compressed", "a"] && p.models.entries[1].reference == "q.model")
        #expect(p.metrics == [.memory, .latency, .fidelity] && p.batch == 1 && p.repeats == 3 && p.warmup == 1)
        #expect(p.sampling.steps == 4 && p.sampling.shift == 3 && p.taskSigmas == [0.25, 0.5, 0.75])
        #expect(p.degradation == [.promptAccuracy] && p.images == nil && !p.savesLatents && p.needsData)
        #expect(p.classifier?.data == "train" && p.classifier?.hidden == 64 && p.classifier?.epochs == 40 && p.classifier?.seed == 0)
        let memory = try k.decodeParams(.map([("models", .map([("m", .reference("t"))])), ("metrics", .list([.string("memory")]))]))
        #expect(!memory.needsData && memory.wants(.memory) && !memory.wants(.latency))
    }
}

// Typed params of train, distill, prune, freeze, quantise and command: each kind's `Params` decodes its own schema
// (defaults from the schema only), every value of an enum-like field reaches its own behaviour (before, a
// value a `switch` did not list fell into `default:` — an unknown density trained logit-normal, an unknown
// freeze policy froze before-first-pruned, unknown components were dropped), and an unknown value is rejected at
// validate time with a did-you-mean, from the recipe and from `--set` alike.
import Compression
import Foundation
import ModelSpec
import Scheduler
import StageGraph
@testable import Stages
import TensorCore
import Testing
import Training
import YAMLSupport

/// The checked params of a stage body (as `GraphBuilder` checks them) and the diagnostics.
private func checked(_ kind: any StageKindDescription, _ yaml: String) throws -> (ParamValue, [Diagnostic]) {
    let node = try YAMLParser.parse(yaml, file: "t.yaml")
    var checker = SchemaChecker(context: "stage 't'")
    let params = checker.check(node, kind.schema, ignoring: CommonStageKeys.names)
    if checker.diagnostics.isEmpty { kind.check(params: params, node: node, checker: &checker) }
    return (params, checker.diagnostics)
}

private func decode<K: TypedStageKind>(_ kind: K, _ yaml: String) throws -> K.Params {
    let (params, diagnostics) = try checked(kind, yaml)
    #expect(diagnostics.isEmpty, "\(diagnostics)")
    return try kind.decodeParams(params)
}

/// The options of a `.choice` field.
private func choices(_ kind: any StageKindDescription, _ field: String) -> [String]? {
    if case .choice(let o)? = kind.schema.field(field)?.type { return o }
    return nil
}

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

@Suite struct TypedParamsTests {
    @Test func trainingSettingsTakeTheDocumentedDefaults() throws {
        let p = try decode(TrainStage(), "init: { config: c.json }\ndata: d\n")
        #expect(p.initial?.config == "c.json" && p.initial?.seed == 0 && p.model == nil && p.data == "d")
        let t = p.training
        #expect(t.steps == 1000 && t.batch == 4 && t.checkpointEvery == 100 && t.guidance == 1 && t.warmupSteps == 0)
        // The official HierarchicalPrune settings, as `OptimizerSettings` states them.
        #expect(t.optimizerSettings == OptimizerSettings())
        #expect(t.random(seed: 9) == TrainingRandom(seed: 9, density: .logitNormal(mean: 0, std: 1),
                                                     schedule: FlowMatchSchedule(FlowMatchSchedulerConfig(shift: 3.0))))
        // The quickstart teacher's settings.
        let q = try decode(TrainStage(), "init: { config: c.json, seed: 2 }\ndata: d\nsteps: 300\nbatch: 16\noptimizer: { adamw: { lr: 2.0e-3 } }\n")
        #expect(q.initial?.seed == 2 && q.training.steps == 300 && q.training.batch == 16)
        #expect(q.training.optimizerSettings == OptimizerSettings(learningRate: 2e-3))
        let written = try decode(DistillStage(), """
            student: s
            teacher: t
            data: d
            grad_clip: 0
            schedule: cosine
            warmup_steps: 5
            optimizer: { adamw: { lr: 0.01, betas: [0.8, 0.95], weight_decay: 0, eps: 1.0e-6 } }
            """).training
        #expect(written.optimizerSettings == OptimizerSettings(learningRate: 0.01, beta1: 0.8, beta2: 0.95, weightDecay: 0, eps: 1e-6,
                                                               gradClip: nil, schedule: LearningRateSchedule(.cosine, warmupSteps: 5)))
    }

    @Test func everyTimestepDensityAndScheduleIsItsOwn() throws {
        var densities: Set<TimestepDensity> = []
        for d in TimestepDensity.Kind.allCases {
            let t = try decode(TrainStage(), "model: m\ndata: d\ntimesteps: { density: \(d.rawValue), mean: 0.5, std: 2, mode_scale: 0.7, shift: 1 }\n").training
            let density = t.random(seed: 0).density
            densities.insert(density)
            switch d {
            case .logitNormal: #expect(density == .logitNormal(mean: 0.5, std: 2))
            case .uniform: #expect(density == .uniform)
            case .mode: #expect(density == .mode(scale: 0.7))
            }
        }
        #expect(densities.count == TimestepDensity.Kind.allCases.count)
        for s in LearningRateSchedule.Kind.allCases {
            #expect(try decode(TrainStage(), "model: m\ndata: d\nschedule: \(s.rawValue)\n").training.optimizerSettings.schedule.kind == s)
        }
    }

    @Test func quantiseFormatsAndSchemesReachEveryStoredFormat() throws {
        var seen: [QuantFormat: QuantiseOptions] = [:]
        for f in QuantiseStage.Format.allCases {
            for scheme in Int4Scheme.allCases {
                let yaml = "model: m\nformat: \(f.rawValue)\n" + (f == .int4 ? "scheme: \(scheme.rawValue)\n" : "")
                let o = try decode(QuantiseStage(), yaml).options
                seen[o.format] = o
                #expect(o.spec.blockSize == (f == .int8 ? nil : 64))
                #expect(o.doubleQuant == (f == .nf4 || f == .fp4), "\(f): double_quant defaults to true for nf4/fp4 only")
                #expect(o.computeDType == "bfloat16" && o.keep.isEmpty)
            }
        }
        #expect(Set(seen.keys) == Set(QuantFormat.allCases))
        #expect(seen[.int4Asym]?.spec == .int4(.asymmetric, blockSize: 64))
        let o = try decode(QuantiseStage(), "model: m\nformat: fp4\nblock_size: 128\ndouble_quant: false\ncompute_dtype: float16\nkeep: [proj_out]\n").options
        #expect(o == QuantiseOptions(spec: .fp4(blockSize: 128), doubleQuant: false, keep: ["proj_out"], computeDType: "float16"))
        // The schema's choices are the enums' raw values.
        #expect(choices(QuantiseStage(), "format") == ["nf4", "fp4", "int4", "int8"])
        #expect(choices(QuantiseStage(), "compute_dtype") == ["float32", "bfloat16", "float16"])
        #expect(choices(QuantiseStage(), "scheme") == ["symmetric", "asymmetric"])
    }

    @Test func everyFreezePolicyIsItsOwn() throws {
        for k in FreezePolicy.Kind.allCases {
            let extra = switch k {
            case .beforeFirstPruned: ""
            case .firstFraction: "fraction: 0.5\n"
            case .blocks: "blocks: \"0-2\"\n"
            }
            let p = try decode(FreezeStage(), "model: m\npolicy: \(k.rawValue)\n" + extra)
            #expect(p.policy == k)
        }
        #expect(try decode(FreezeStage(), "model: m\n").policy == .beforeFirstPruned)
        let (_, d) = try checked(FreezeStage(), "model: m\npolicy: first-fraction\n")
        #expect(d.contains { $0.message.contains("needs 'fraction'") })
    }

    @Test func pruneParamsAreTyped() throws {
        let p = try decode(PruneStage(), "model: m\nscores: s\ntarget: { memory_gb: 1.5 }\ncomponents: [attn, ff_context]\ngranularity: mixed\nranking: signed\nprotect_first: 2\n")
        #expect(p.target?.value == .memoryGB(1.5) && p.components == [.attn, .ff_context] && p.granularity == .mixed)
        #expect(p.ranking == .signed && p.protectFirst == 2 && p.remove == nil)
        let d = try decode(PruneStage(), "model: m\nscores: s\ntarget: { params: 0.2 }\n")
        #expect(d.target?.value == .params(0.2) && d.granularity == .block && d.ranking == .absolute && d.protectFirst == 0 && d.components == nil)
        #expect(try decode(PruneStage(), "model: m\nremove: \"1-3\"\n").remove == "1-3")
        let (_, bad) = try checked(PruneStage(), "model: m\nscores: s\ntarget: { params: 0.2 }\ncomponents: [attn, fff]\n")
        #expect(bad.contains { $0.hint == "did you mean 'ff'?" }, "an unknown component used to be dropped silently: \(bad)")
    }

    @Test func distillDefaultsThatDependOnOtherFields() throws {
        let base = "student: s\nteacher: t\ndata: d\n"
        let plain = try decode(DistillStage(), base)
        #expect(plain.x0 == nil && plain.x0Source == .auto && plain.scalingForm == .binary)
        #expect(plain.loss.value == DistillationLoss(form: .hierarchicalprune))
        #expect(plain.scaling == SGDistillScaling(form: .binary, threshold: 0.25, epsilon: 0.01, cap: SGDistillScaling.defaultCap))
        #expect(try decode(DistillStage(), base + "scores: sc\n").scalingForm == .inverse)
        #expect(try decode(DistillStage(), base + "scores: sc\nsensitivity: { form: binary }\n").scalingForm == .binary)
        for form in DistillationForm.allCases {
            let l = try decode(DistillStage(), base + "loss: { form: \(form.rawValue), task: 0 }\n").loss.value
            #expect(l.form == form && l.output == form.defaultWeights.output && l.feature == form.defaultWeights.feature && l.task == 0)
        }
        for x in DistillStage.X0Source.allCases {
            let p = try decode(DistillStage(), base + "x0: \(x.rawValue)\n")
            #expect(p.x0Source == x)
            #expect(x.usesLatents(datasetHasLatents: true) == (x != .noise))
            #expect(x.usesLatents(datasetHasLatents: false) == (x == .latents))
        }
        let (_, d) = try checked(DistillStage(), base + "sensitivity: { form: inverse }\n")
        #expect(d.contains { $0.message.contains("needs 'scores'") })
    }

    @Test func commandParams() throws {
        let p = try decode(CommandStage(), "run: [python3, s.py]\ninputs: { my-model: m }\nenv: { A_B: x }\noutputs: [out.json]\ntimeout: 5\n")
        #expect(p.run == ["python3", "s.py"] && p.inputs == ["my-model": "m"] && p.env == ["A_B": "x"])
        #expect(p.outputs == ["out.json"] && p.deps.isEmpty && p.timeout == 5)
        let d = try decode(CommandStage(), "run: [true]\n")
        #expect(d.inputs.isEmpty && d.outputs.isEmpty && d.env.isEmpty && d.timeout == nil)
    }

    @Test("an unknown enum value is rejected at validate time with a did-you-mean, from the recipe and from --set",
          arguments: [("stages.quantise.format=nf5", "did you mean 'nf4'?"),
                      ("stages.freeze.policy=before-first-prune", "did you mean 'before-first-pruned'?"),
                      ("stages.prune.granularity=mixd", "did you mean 'mixed'?"),
                      ("stages.distill.loss.form=bk_sdm", "did you mean 'bk-sdm'?"),
                      ("stages.distill.timesteps.density=logit_normal", "did you mean 'logit-normal'?"),
                      ("stages.teacher.schedule=cosin", "did you mean 'cosine'?"),
                      ("stages.distill.x0=latent", "did you mean 'latents'?")])
    func unknownValuesAreRejected(_ override: String, _ hint: String) throws {
        let recipe = repoRoot.appendingPathComponent("recipes/quickstart.yaml").path
        #expect(throws: Never.self) {
            _ = try Workspace.load(path: recipe, environment: [:], registry: StageRegistry(StageKinds.all))
        }
        let e = try #require(throws: DiagnosticError.self) {
            _ = try Workspace.load(path: recipe, overrides: [override], environment: [:], registry: StageRegistry(StageKinds.all))
        }
        #expect(e.diagnostics.count == 1 && e.diagnostics[0].hint == hint, "\(e)")
        #expect(e.diagnostics[0].mark?.file == "<--set 1>", "the error points into the --set argument: \(e)")
    }
}

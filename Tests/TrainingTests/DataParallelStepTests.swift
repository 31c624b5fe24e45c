// Micro-batched steps in one process (`SingleProcess`; real MPI ranks are tested by CLITests/DataParallelTests):
// a micro-batch draws the σ and noise of its rows of the whole batch, the micro-batch gradients weighted by n_i/B
// sum to the whole-batch gradient (to rounding), an uneven last micro-batch is weighted right, the step is
// deterministic, ownership is round-robin, and the Open MPI loader fails with the packages to install.

import CPUBackend
import Foundation
import Models
import TensorCore
import Testing
@testable import Training

@Suite struct DataParallelStepTests {
    @Test func microBatchesAreFixedByBatchAndSizeOnly() {
        let m = MicroBatches(batch: 10, size: 4)
        #expect(m.count == 3)
        #expect((0..<3).map(m.range) == [0..<4, 4..<8, 8..<10])
        #expect(m.owned(rank: 0, ranks: 2) == [0, 2] && m.owned(rank: 1, ranks: 2) == [1])
        #expect(m.owned(rank: 0, ranks: 1) == [0, 1, 2])
        #expect(MicroBatches(batch: 3, size: 8).count == 1)
    }

    @Test func aMicroBatchDrawsItsRowsOfTheWholeBatch() throws {
        let be = CPUBackend()
        let random = TrainingRandom(seed: 11)
        let x0 = try be.randomNormal([6, 4, 8, 8], seed: 2, offset: 0)
        let whole = try random.draw(x0, step: 3, backend: be)
        let part = try random.draw(try be.transfer(x0.rows(2..<5)), step: 3, sampleOffset: 2, backend: be)
        #expect(part.sigmas == Array(whole.sigmas[2..<5]))
        #expect(try be.floats(part.noisy) == be.floats(try be.transfer(whole.noisy.rows(2..<5))))
        #expect(try be.floats(part.target) == be.floats(try be.transfer(whole.target.rows(2..<5))))
    }

    /// Σ (n_i/B)·g_i over micro-batches of 2 (and an uneven 2+2+1) is the whole batch's gradient to f32 rounding.
    @Test(arguments: [2, 4]) func weightedMicroBatchGradientsSumToTheWholeBatchGradient(size: Int) throws {
        let teacher = try load("sd35_tiny"), student = try load("sd35_tiny", removing: ["blocks.1"])
        let trainer = try Trainer(model: student, objective: .distillation(teacher: teacher, loss: DistillationLoss(feature: 0.1)),
                                  trainable: TrainableParameters(structure: student.structure, loaded: Set(student.weights.names)),
                                  settings: OptimizerSettings(), random: TrainingRandom(seed: 5), totalSteps: 1)
        let be = student.backend
        let bt = try batch(student, b: 5)
        let (loss, whole) = try trainer.lossAndGradients(bt, step: 1)
        let micro = MicroBatches(batch: 5, size: size)
        var sum: [String: [Double]] = [:]
        var total = 0.0
        for i in 0..<micro.count {
            let r = micro.range(i)
            let (l, g) = try trainer.lossAndGradients(try bt.rows(r, backend: be), step: 1, sampleOffset: r.lowerBound)
            let w = Double(r.count) / 5
            total += w * l.output
            for (n, t) in g {
                let v = try be.floats(t)
                sum[n, default: [Double](repeating: 0, count: v.count)] = zip(sum[n] ?? [Double](repeating: 0, count: v.count), v).map { $0 + w * Double($1) }
            }
        }
        // The output MSE is a mean over samples, so the weighted micro-batch losses give it exactly (to rounding).
        #expect(abs(total - loss.output) <= 1e-5 * loss.output, "\(total) vs \(loss.output)")
        #expect(Set(sum.keys) == Set(whole.keys))
        var worst = 0.0
        for (n, g) in whole {
            let ref = try be.floats(g)
            let scale = max(ref.map { abs(Double($0)) }.max() ?? 0, 1e-12)
            for (a, b) in zip(sum[n]!, ref) { worst = max(worst, abs(a - Double(b)) / scale) }
        }
        #expect(worst < 1e-4, "largest relative gradient difference \(worst)")
    }

    @Test func aMicroBatchedStepIsDeterministicAndLowersTheLoss() throws {
        func run() throws -> (loss: [Double], weights: [Float], print: UInt64) {
            let teacher = try load("sd35_tiny"), student = try load("sd35_tiny", removing: ["blocks.1"])
            let trainer = try Trainer(model: student, objective: .distillation(teacher: teacher, loss: DistillationLoss(feature: 0.1)),
                                      trainable: TrainableParameters(structure: student.structure, loaded: Set(student.weights.names), frozenBlocks: [0]),
                                      settings: OptimizerSettings(learningRate: 3e-3), random: TrainingRandom(seed: 9), totalSteps: 4)
            let bt = try batch(student, b: 4)
            var losses: [Double] = []
            for s in 0..<4 {
                losses.append(try trainer.dataParallelStep(bt, step: s, micro: MicroBatches(batch: 4, size: 1), collective: SingleProcess()).loss.total)
            }
            return (losses, try student.backend.floats(try student.weights("transformer_blocks.2.attn.to_q.weight")),
                    try trainer.trainedWeightsFingerprint())
        }
        let a = try run(), b = try run()
        #expect(a.weights == b.weights && a.loss == b.loss && a.print == b.print)
        #expect(a.loss.last! < a.loss.first!, "\(a.loss)")
    }

    @Test func singleProcessCollectivesCopy() throws {
        let c = SingleProcess()
        #expect(try c.allGather(Int64(42)) == [42])
        #expect(try c.broadcast([1, 2, 3]) == [1, 2, 3])
    }

    @Test func launchEnvironmentIsReadLikeTheLaunchersSetIt() {
        #expect(MPILaunch.worldSize(["OMPI_COMM_WORLD_SIZE": "4"]) == 4)
        #expect(MPILaunch.worldSize(["PMIX_RANK": "1", "SLURM_STEP_NUM_TASKS": "2"]) == 2)
        // A Slurm batch script has SLURM_NTASKS but is no rank.
        #expect(MPILaunch.worldSize(["SLURM_NTASKS": "2", "SLURM_JOB_ID": "7"]) == nil)
        #expect(MPILaunch.localSize(["SLURM_STEP_TASKS_PER_NODE": "2(x3)"]) == 2)
    }
}

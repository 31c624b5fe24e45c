// Flow-matching schedule maths against diffusers' FlowMatchEulerDiscreteScheduler
// (Fixtures/models/schedules.json, computed by generate.py).

import TensorFiles
import Foundation
import ModelSpec
import Testing

func schedules() throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/schedules.json"))) as! [String: Any]
}

@Suite struct Schedules {
    @Test func sd35LargeTurboFourSteps() throws {
        let s = FlowMatchSchedule(.sd35LargeTurbo)
        let sigmas = try s.sigmas(steps: 4)
        let want: [Float] = [1, 0.857692, 0.602151, 0.008929, 0]
        #expect(sigmas.count == 5)
        for (a, b) in zip(sigmas, want) { #expect(abs(a - b) < 1e-6, "\(a) vs \(b)") }
        #expect(try s.timesteps(steps: 4).first == 1000)
    }

    @Test func matchesDiffusers() throws {
        for (name, value) in try schedules() {
            guard let c = value as? [String: Any], let steps = c["steps"] as? Int else { continue }
            let cfgJSON = try JSONSerialization.data(withJSONObject: c["config"]!)
            guard case .success(let v) = JSONValue.parse(cfgJSON), let o = v.objectValue else { Issue.record(); continue }
            let schedule = FlowMatchSchedule(try FlowMatchSchedulerConfig.parse(o, file: name))
            var mu = c["mu"] as? Double
            if let len = c["image_seq_len"] as? Int {
                #expect(abs(schedule.mu(imageSequenceLength: len) - mu!) < 1e-12, "\(name)")
                mu = schedule.mu(imageSequenceLength: len)
            }
            let sig = try schedule.sigmas(steps: steps, mu: mu)
            let want = (c["sigmas"] as! [Double]).map(Float.init)
            #expect(sig.count == want.count, "\(name)")
            for (a, b) in zip(sig, want) { #expect(abs(a - b) <= 1e-6, "\(name): \(a) vs \(b)") }
            let ts = try schedule.timesteps(steps: steps, mu: mu)
            for (a, b) in zip(ts, (c["timesteps"] as! [Double]).map(Float.init)) { #expect(abs(a - b) <= 1e-3, "\(name) t: \(a) vs \(b)") }
            for (i, want) in c["training_sigmas_at"] as! [String: Double] {
                #expect(schedule.trainingSigmas[Int(i)!] == Float(want), "\(name) training sigma \(i)")
            }
        }
    }

    @Test func dynamicShiftingNeedsMu() throws {
        let s = FlowMatchSchedule(FlowMatchSchedulerConfig(shift: 1, useDynamicShifting: true))
        #expect(throws: ModelSpecError.self) { try s.sigmas(steps: 4) }
        #expect(throws: ModelSpecError.self) { try FlowMatchSchedule(.sd35LargeTurbo).sigmas(steps: 0) }
    }

    @Test func unsupportedSchedulerOptionsAreRejected() throws {
        #expect(throws: ModelSpecError.self) { try FlowMatchSchedulerConfig.parse(["use_karras_sigmas": .bool(true)], file: "s.json") }
        #expect(throws: ModelSpecError.self) { try FlowMatchSchedulerConfig.parse(["_class_name": .string("DDIMScheduler")], file: "s.json") }
        let c = try FlowMatchSchedulerConfig.parse(["_class_name": .string("FlowMatchEulerDiscreteScheduler"), "shift": .double(3.0)], file: "s.json")
        #expect(c == .sd35LargeTurbo)
    }

    @Test func logitNormalTrainingSigmas() throws {
        let ln = try #require(try schedules()["logit_normal_training"] as? [String: Any])
        let s = FlowMatchSchedule(.sd35LargeTurbo)
        let density = TimestepDensity.logitNormal(mean: 0, std: 1)
        for (k, z) in (ln["z"] as! [Double]).enumerated() {
            let u = density.u(draw: z)
            #expect(abs(u - (ln["u"] as! [Double])[k]) < 1e-12)
            #expect(s.trainingSigma(u: u) == Float((ln["sigma"] as! [Double])[k]))
        }
        let mode = try #require(try schedules()["mode_density_1.29"] as? [String: Any])
        for (r, u) in zip(mode["r"] as! [Double], mode["u"] as! [Double]) {
            #expect(abs(TimestepDensity.mode(scale: 1.29).u(draw: r) - u) < 1e-12)
        }
        #expect(s.trainingSigma(u: 0.99999999) == s.trainingSigmas[999])
    }

    @Test func eulerAndTrainingPairs() {
        #expect(FlowMatchSchedule.eulerStep(x: 1, velocity: 2, sigma: 1, sigmaNext: 0.5) == 0)
        let p = flowMatchNoisy(x0: 2, noise: -1, sigma: 0.25)
        #expect(p.xt == 0.25 * -1 + 0.75 * 2 && p.target == -3)
    }
}

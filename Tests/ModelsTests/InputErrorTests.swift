// Bad forward inputs are reported naming the argument (and file), never crash.

import CPUBackend
import TensorFiles
import Foundation
import ModelSpec
import Models
import TensorCore
import Testing

/// Expects `body` to throw a `ModelError` about `subject` (and from `source`, when given).
func expectModelError(_ subject: String, source: String? = nil, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("no error; expected one about '\(subject)'")
    } catch let e as ModelError {
        #expect(e.subject == subject, "\(e)")
        if let source { #expect(e.source == source, "\(e)") }
    } catch {
        Issue.record("unexpected error \(error)")
    }
}

@Suite("Forward input errors")
struct InputErrorTests {
    @Test("wrong channel count names hidden_states")
    func wrongChannels() throws {
        let be = CPUBackend()
        let fx = try Fixture("sd3_tiny", backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be)
        var inp = fx.inputs
        inp.hiddenStates = try be.zeros([2, 3, 16, 12], dtype: .f32)
        expectModelError("hidden_states") { _ = try model.forward(inp) }
        inp = fx.inputs
        inp.hiddenStates = try be.zeros([2, 4, 15, 12], dtype: .f32)   // not a multiple of the patch
        expectModelError("hidden_states") { _ = try model.forward(inp) }
        inp = fx.inputs
        inp.timestep = [1]
        expectModelError("timestep") { _ = try model.forward(inp) }
    }

    @Test("FLUX without guidance or img_ids names them; the file is named")
    func fluxMissing() throws {
        let be = CPUBackend()
        let fx = try Fixture("flux_tiny", backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be)
        var inp = fx.inputs
        inp.guidance = nil
        expectModelError("guidance") { _ = try model.forward(inp) }
        inp = fx.inputs
        inp.imgIds = nil
        expectModelError("img_ids", source: "x.safetensors") { _ = try model.forward(inp, inputsSource: "x.safetensors") }
        // An inputs file lacking a tensor.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hprune-models-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/in.safetensors"
        try SafetensorsWriter.write([TensorPayload(name: "hidden_states", shape: [1, 4, 16], floats: .init(repeating: 0, count: 64))], to: path)
        expectModelError("encoder_hidden_states", source: path) { _ = try TransformerInputs.load(path: path, for: model.config, backend: be) }
    }
}

@Suite("Non-finite weights")
struct NonFiniteTests {
    @Test("NaN weights are listed and refused for training, naming the tensor")
    func nanWeights() throws {
        let be = CPUBackend()
        let fx = try Fixture("sd3_tiny", backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be)
        #expect(try model.weights.nonFiniteTensors().isEmpty)
        try model.weights.requireFinite()
        let name = "transformer_blocks.0.ff.net.2.bias"
        var v = try be.floats(try model.weights(name))
        v[1] = .nan
        model.weights.set(name, try be.tensor(v, shape: [v.count]))
        #expect(try model.weights.nonFiniteTensors() == [name])
        expectModelError(name) { try model.weights.requireFinite() }
    }
}

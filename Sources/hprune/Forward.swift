// `hprune forward`: one forward pass of a diffusers transformer folder on inputs from a safetensors file,
// writing the prediction as tensor `sample`. Exit 0 ok, 2 bad input (model or inputs), 1 other failures.
import ArgumentParser
import ArtifactStore
import CPUBackend
import TensorFiles
import Foundation
import ModelSpec
import Models
import Stages
import TensorCore

struct Forward: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one forward pass of a transformer (SD3/SD3.5/FLUX) on inputs from a safetensors file.",
        discussion: """
            Inputs are named like diffusers' forward arguments: hidden_states, encoder_hidden_states,
            pooled_projections, timestep (SD3: sigma·1000; FLUX: sigma, ×1000 inside), and for FLUX img_ids,
            txt_ids (optional, zeros) and guidance (models with guidance embeds). The output tensor is `sample`.

            Examples:
              hprune forward sd35/transformer --inputs in.safetensors --output out.safetensors
              hprune forward flux/transformer --inputs in.safetensors --output out.safetensors --dtype bf16
              hprune forward sd35/transformer --inputs in.safetensors --output out.safetensors --remove blocks.25 --remove blocks.3.ff
            """
    )

    @Argument(help: "A diffusers transformer folder (config.json + safetensors).", completion: .directory)
    var model: String

    @Option(help: "Safetensors file with the forward arguments.", completion: .file(extensions: ["safetensors"]))
    var inputs: String

    @Option(help: "Where to write the output (tensor 'sample', f32).", completion: .file(extensions: ["safetensors"]))
    var output: String

    @Option(help: "Backend: cpu, reference or cuda.")
    var backend: String = "cpu"

    @Option(help: "Compute precision: f32 or bf16.")
    var dtype: String = "f32"

    @Option(name: .customLong("remove"), help: ArgumentHelp("Remove a component for this pass (repeatable), e.g. blocks.12.ff.", valueName: "address"))
    var remove: [String] = []

    func validate() throws {
        guard ComputeDType(rawValue: dtype) != nil else { throw ValidationError("--dtype must be f32 or bf16, got '\(dtype)'") }
    }

    func run() async throws {
        let be: any Backend
        do {
            be = try BackendRegistry.all.make(backend)
        } catch {
            Terminal.err("error: backend '\(backend)': \(error)")
            throw Exit.failed
        }
        do {
            let model = try loadTransformer(path: self.model, backend: be, compute: ComputeDType(rawValue: dtype) ?? .f32,
                                            removing: remove)
            let bad = try DiffusersFolder(path: self.model).nonFiniteTensors()
            if !bad.isEmpty { Terminal.err("warning: \(self.model): NaN or Inf in " + bad.joined(separator: ", ")) }
            let x = try TransformerInputs.load(path: inputs, for: model.config, backend: be)
            let out = try model.forward(x, inputsSource: inputs)
            try SafetensorsWriter.write([TensorPayload(name: "sample", shape: out.shape, floats: try be.floats(out))],
                                        metadata: ["hprune": "forward", "dtype": dtype, "backend": be.name], to: output)
        } catch let e as ModelSpecError {  // also ModelError (the same type)
            Terminal.err(e.description); throw Exit.invalid
        } catch let e as TensorFileError {
            Terminal.err(e.description)
            throw e.file == output ? Exit.failed : Exit.invalid
        } catch {
            Terminal.err("error: \(PlainError.describe(error))"); throw Exit.failed
        }
    }
}

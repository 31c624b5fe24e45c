// `hprune inspect`: a model's architecture, blocks, removable sub-components with parameter counts, and bytes by
// dtype, from ModelSpec's inspect report. Malformed or hostile files are refused with a message and exit 2.
import ArgumentParser
import ArtifactStore
import TensorFiles
import Foundation
import ModelSpec
import YAMLSupport

struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a diffusers transformer folder or a safetensors file.",
        discussion: """
            Examples:
              hprune inspect sd35/transformer
              hprune inspect sd35/transformer --json
              hprune inspect weights.safetensors
            """
    )

    @Argument(help: "A diffusers transformer folder or a .safetensors file.", completion: .file())
    var model: String

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(name: .customLong("no-scan"), help: "Skip the NaN/Inf scan of every weight (faster on large models).")
    var noScan = false

    func run() async throws {
        let report: InspectReport
        do {
            report = try inspect(path: model, scanNonFinite: !noScan)
        } catch let e as TensorFileError {
            Terminal.err(e.description); throw Exit.invalid
        } catch let e as ModelSpecError {
            Terminal.err(e.description); throw Exit.invalid
        } catch {
            Terminal.err("error: \(model): \(PlainError.describe(error))"); throw Exit.failed
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try enc.encode(report), as: UTF8.self))
        } else {
            // Names and metadata come from the file: escape control and bidi characters (line breaks kept).
            print(TerminalText.escape(report.renderText(), keepNewlines: true), terminator: "")
        }
        if !report.nonFiniteTensors.isEmpty {
            Terminal.err("warning: NaN or Inf in: " + report.nonFiniteTensors.joined(separator: ", "))
        }
    }
}

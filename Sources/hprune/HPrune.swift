// The `hprune` command line: the root command, exit codes (0 ok, 1 failed run, 2 invalid input), and the
// subcommand list. Each subcommand lives in its own file.
import ArgumentParser
import Foundation

@main
struct HPruneCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hprune",
        abstract: "Compress MMDiT diffusion transformers (SD3, SD3.5, FLUX.1) with HierarchicalPrune, driven by YAML recipes.",
        discussion: """
            A recipe is a YAML file of stages (score, prune, freeze, distill, quantise, evaluate, command, …).
            hprune checks it, plans it against a content-addressed cache, runs what is not cached, and records
            every run so runs and recipes can be compared.

            Examples:
              hprune run recipes/quickstart.yaml
              hprune plan recipes/quickstart.yaml --set vars.budget=0.3
              hprune diff recipes/a.yaml recipes/b.yaml
            """,
        version: "0.1.0",
        subcommands: [
            Run.self, Validate.self, PlanCommand.self, GraphCommand.self,
            Runs.self, Show.self, Diff.self, Cache.self, Kinds.self, Backends.self, Forward.self, Inspect.self, Bench.self,
            Quantise.self, Export.self, Import.self, LoraRemap.self, Report.self, Job.self, SelfTest.self,
        ]
    )

    static func main() async {
        do {
            var command = try parseAsRoot()
            if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                print(message)
                Foundation.exit(0)
            }
            if !message.isEmpty { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            // Usage mistakes are invalid input, like an invalid recipe.
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

/// Exit codes shared by every subcommand.
enum Exit {
    static let failed = ExitCode(1)
    static let invalid = ExitCode(2)
    static let interrupted = ExitCode(130)
}

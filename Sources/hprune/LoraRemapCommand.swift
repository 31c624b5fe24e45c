// `hprune lora-remap LORA --model EXPORT --out DIR`: a LoRA trained for the teacher, rewritten onto a pruned
// diffusers export (renumbered keys, adapters of removed modules dropped and listed), so that it never silently
// does nothing on the pruned model.
import ArgumentParser
import Foundation
import ModelStore

struct LoraRemap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora-remap",
        abstract: "Rewrite a teacher's LoRA onto a pruned diffusers export.",
        discussion: """
            LORA is a safetensors file in diffusers' PEFT key layout (transformer.transformer_blocks.N.attn.to_q.lora_A.weight,
            …lora_B.weight; also …lora.down/up.weight and …alpha). EXPORT is a folder written by `hprune export
            --format diffusers` (either layout): its weights file records how blocks were renumbered. Adapters of
            removed blocks and sub-components are dropped and listed; the lora_B rows of a block that became the last
            (context_pre_only) SD3 block are cut as its norm1_context was.

            Example:
              hprune lora-remap style.safetensors --model out/sd35-hpp20 --out out/style-hpp20
            """)

    @Argument(help: "The LoRA safetensors file.", completion: .file()) var lora: String
    @Option(help: "The pruned diffusers export folder.", completion: .directory) var model: String
    @Option(help: "The folder to create (must not exist, or be empty).", completion: .directory) var out: String
    @Flag(help: "Print the report as JSON.") var json = false

    func run() async throws {
        let report: LoraRemapReport
        do { report = try ModelStore.remapLoRA(lora: lora, export: model, out: URL(fileURLWithPath: out)) } catch let e as ExportRefusal {
            Terminal.err("error: \(e)")
            throw Exit.invalid
        } catch let e as ModelStoreError {
            Terminal.err("error: \(e)")
            throw Exit.failed
        } catch {
            Terminal.err("error: cannot remap \(lora) onto \(model): \(error)")
            throw Exit.invalid
        }
        if json {
            let obj: [String: Any] = ["kept": report.kept, "renumbered": report.renumbered, "sliced": report.sliced,
                                      "dropped": report.dropped.map { ["module": $0.module, "reason": $0.reason] }]
            let d = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: d, as: UTF8.self))
            return
        }
        print("wrote \(out) (\(report.kept) tensors; \(report.renumbered) modules renumbered\(report.sliced.isEmpty ? "" : ", \(report.sliced.count) cut for context_pre_only"))")
        if !report.dropped.isEmpty {
            print("dropped the adapters of \(report.dropped.count) modules the pruned model no longer has:")
            for d in report.dropped { print("  \(d.module): \(d.reason)") }
        }
    }
}

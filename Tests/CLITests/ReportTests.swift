// `hprune report` through the real binary: a small real evaluate run (the committed digits teacher, a few
// held-out prompts) with a classifier and sample grids, rendered to Markdown with its PNGs copied out.
import Foundation
import PNGSupport
import Testing
import TestSupport

@Test func reportRendersMetricsAndCopiesSampleGrids() throws {
    let dir = TemporaryDirectory()
    let root = repositoryRoot().path
    // Sixteen held-out prompts, 2 Euler steps: the teacher and the teacher without its last two blocks.
    let recipe = dir.write("r.yaml", """
        recipe: 1
        name: tiny-report
        backend: cpu
        models: { teacher: { format: diffusers, path: \(root)/recipes/digits/teacher } }
        datasets:
          train: { path: \(root)/Examples/digits/digits-train.safetensors, format: safetensors }
          test: { path: \(root)/Examples/digits/digits-test.safetensors, format: safetensors }
        stages:
          prune: { kind: prune, model: teacher, remove: "10-11" }
          evaluate:
            kind: evaluate
            models: { teacher: teacher, pruned: prune }
            data: test
            samples: 16
            batch: 16
            metrics: [memory, task]
            classifier: { data: train, hidden: 16, epochs: 2 }
            sampling: { steps: 2 }
            images: { columns: 3, rows: 4, scale: 2 }
        """)
    let run = try CLI.run(["run", recipe, "--json"], timeout: 300)
    #expect(run.status == 0, "\(run.stderr)")
    let id = try #require(jsonObject(run.stdout)?["run"] as? String)
    // A second run without `images` (memory only): the report says it has no grids, and is not an error.
    let plain = dir.write("p.yaml", """
        recipe: 1
        name: plain
        models: { teacher: { format: diffusers, path: \(root)/recipes/digits/teacher } }
        stages:
          evaluate: { kind: evaluate, models: { teacher: teacher }, metrics: [memory] }
        """)
    let second = try CLI.run(["run", plain, "--json", "--store", dir.path + "/.hprune"])
    #expect(second.status == 0, "\(second.stderr)")
    let id2 = try #require(jsonObject(second.stdout)?["run"] as? String)

    let images = dir.path + "/docs/results"
    let r = try CLI.run(["report", id, id2, "--store", dir.path + "/.hprune", "--images", images,
                         "--markdown-dir", dir.path + "/docs"])
    #expect(r.status == 0, "\(r.stderr)")
    let lines = r.stdout.split(separator: "\n").map(String.init)
    #expect(lines.first?.hasPrefix("| run | model | params | weights (MB) |") == true, "\(r.stdout)")
    #expect(lines.first?.contains("prompt accuracy") == true && lines.first?.contains("Fréchet") == true)
    #expect(lines.contains { $0.hasPrefix("| tiny-report | teacher | 1008292 | 4.082 |") }, "\(r.stdout)")
    #expect(lines.contains { $0.hasPrefix("| tiny-report | pruned | ") })
    #expect(r.stdout.contains("Classifier held-out accuracy: "))
    #expect(r.stdout.contains("## Samples") && r.stdout.contains("![tiny-report teacher](results/tiny-report-teacher.png)"), "\(r.stdout)")
    #expect(r.stdout.contains("![tiny-report pruned](results/tiny-report-pruned.png)"))
    #expect(r.stdout.contains("No sample grids: run \(id2)"))
    #expect(r.stderr.contains("note: run \(id2) (plain) has no sample grids"))

    // The grid: 4 class rows of 3 columns, 16×16 latents at scale 2, 1-pixel gaps: 3·33+1 × 4·33+1, greyscale.
    let png = [UInt8](try Data(contentsOf: URL(fileURLWithPath: images + "/tiny-report-teacher.png")))
    #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
    #expect(Array(png[12..<16]) == Array("IHDR".utf8))
    func be32(_ i: Int) -> Int { png[i..<(i + 4)].reduce(0) { $0 << 8 | Int($1) } }
    #expect(be32(16) == 100 && be32(20) == 133 && png[24] == 8 && png[25] == 0)
    #expect(try FileManager.default.contentsOfDirectory(atPath: images).sorted() == ["tiny-report-pruned.png", "tiny-report-teacher.png"])

    // The same run twice: its teacher is shown once and its identical pruned grid is linked, not copied again.
    let twice = try CLI.run(["report", id, id, "--store", dir.path + "/.hprune", "--images", dir.path + "/twice"])
    #expect(twice.status == 0, "\(twice.stderr)")
    #expect(twice.stdout.components(separatedBy: "/twice/tiny-report-pruned.png)").count == 3, "\(twice.stdout)")
    #expect(twice.stdout.components(separatedBy: "/twice/tiny-report-teacher.png)").count == 2, "\(twice.stdout)")
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/twice").sorted() == ["tiny-report-pruned.png", "tiny-report-teacher.png"])

    // An unknown run id: exit 2, naming it.
    let bad = try CLI.run(["report", "r-nope", "--store", dir.path + "/.hprune"])
    #expect(bad.status == 2 && bad.stderr.contains("no run 'r-nope'"), "\(bad.stderr)")
}

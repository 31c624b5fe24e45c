// `hprune report --html`'s rendering: snapshot tests of its SVG plots for fixed synthetic data (re-record with
// HPRUNE_RECORD=1 after an intended change, and look at Tests/Fixtures/report/*.svg in a browser), the loss-curve
// log line round trip, and the page's self-containment (no scripts, no external references) and escaping.
import ArtifactStore
import Compression
import Foundation
import ModelStore
@testable import Stages
import Testing
import TestSupport

/// Six blocks × {block, attn, ff, ff_context}: a negative ΔP, an unscored address, the last block without ff_context.
let syntheticSensitivity: Sensitivity = {
    var entries: [String] = []
    for b in 0..<6 {
        let w = exp(-1.0 * Double(b - 6) / 6)
        for c in ["", ".attn", ".ff", ".ff_context"] where !(b == 5 && c == ".ff_context") {
            let address = "blocks.\(b)\(c)"
            let d: String
            switch address {
            case "blocks.3.ff": d = "null"
            case "blocks.4.attn": d = "-0.002"
            default: d = String(format: "%.4f", (c.isEmpty ? 0.5 : 0.1) / Double(b + 1) + Double(c.count) * 0.001)
            }
            entries.append(#"{"address": "\#(address)", "delta_p": \#(d), "w_pos": \#(String(format: "%.6f", w)), "eligible": \#(d != "null")}"#)
        }
    }
    let json = #"{"schema": 1, "architecture": "SD3Transformer2DModel", "block_count": 6, "metric": "sample-mse", "baseline": 0.0, "position_weight": {"form": "exponential", "rate": -1}, "entries": [\#(entries.joined(separator: ", "))]}"#
    return try! Sensitivity.decode(Data(json.utf8), source: "synthetic")
}()

/// Compares `text` with the committed snapshot `name`, or writes it when HPRUNE_RECORD=1.
func checkSnapshot(_ text: String, _ name: String) throws {
    let url = repositoryRoot().appendingPathComponent("Tests/Fixtures/report/\(name)")
    if ProcessInfo.processInfo.environment["HPRUNE_RECORD"] == "1" {
        try Data(text.utf8).write(to: url, options: .atomic)
    }
    let want = try String(contentsOf: url, encoding: .utf8)
    #expect(text == want, "Tests/Fixtures/report/\(name) differs: if the change is intended, run `HPRUNE_RECORD=1 swift test --filter HTMLReportTests` and look at the file")
}

@Suite struct HTMLReportTests {
    @Test func heatMapSnapshot() throws {
        let svg = HTMLReport.heatMapSVG(syntheticSensitivity, removed: ["blocks.2", "blocks.4.ff"])
        try checkSnapshot(svg, "heatmap.svg")
        // Independently of the snapshot: 4 rows × 6 columns minus the missing ff_context, a cross per removed cell
        // (block 2's whole column: 4 cells, and 4.ff), tooltips, accessible name, a legend.
        #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.contains("role=\"img\""))
        #expect(svg.components(separatedBy: "<g><title>").count - 1 == 23)
        #expect(svg.components(separatedBy: "stroke=\"#d62728\" stroke-width=\"2\"/></g>").count - 1 == 5)
        #expect(svg.contains("<title>blocks.4.attn: ΔP -0.002, W_pos 1.4</title>"), "\(svg)")
        #expect(svg.contains("<title>blocks.3.ff: ΔP not scored, W_pos 1.65, not eligible</title>"))
        #expect(svg.contains(">ΔP</text>") && svg.contains(">block</text>") && svg.contains(">component</text>") && svg.contains(">removed</text>"))
        // Equal input, equal bytes.
        #expect(svg == HTMLReport.heatMapSVG(syntheticSensitivity, removed: ["blocks.4.ff", "blocks.2"]))
    }

    @Test func barsAndLinesSnapshot() throws {
        let rec = SGDistillRecord(form: "inverse", threshold: 0.25, compressionRatio: 0.3, multipliers: [0, 0, 0.5, 1.25, 0, 0.8],
                                  components: ["blocks.3.attn": 0.2, "blocks.3.ff": 3.5])
        #expect(HTMLReport.sgdistillUnits(rec).map(\.label) == ["blocks.2", "blocks.3.rest", "blocks.3.attn", "blocks.3.ff", "blocks.5"])
        let line = TrainingLoop.lossCurveLine((0..<250).map { 1 / Double($0 + 1) + 0.01 }, start: 0)
        let curve = try #require(HTMLReport.parseLossCurve("other\n" + line))
        #expect(curve.every == 3 && curve.points.count == 84 && curve.points.last?.step == 250 && curve.points.first?.step == 3)
        #expect(abs(curve.points[0].loss - (1 + 0.5 + 1 / 3.0) / 3 - 0.01) < 1e-5)
        let svg = HTMLReport.sgdistillSVG(rec) + HTMLReport.positionWeightSVG(syntheticSensitivity)
            + SVGPlot.lines(title: "Training loss: distill (distill)", description: "synthetic", series: [(name: "distill", points: curve.points.map { (Double($0.step), $0.loss) })],
                            xLabel: "step", yLabel: "loss")
        try checkSnapshot(svg, "plots.svg.txt")
        #expect(svg.contains("(log scale)"))     // 1.01 … 0.014: more than a factor 20
    }

    @Test func pageIsSelfContainedAndEscaped() throws {
        var run = HTMLReport.RunData(label: "a<b>&\"c\"", id: "r-1")
        run.sensitivity = ("score", syntheticSensitivity)
        run.removed = ("prune", ["blocks.2"])
        run.frozen = ("freeze", [0, 1], ["pos_embed."])
        run.sgdistill = ("distill", SGDistillRecord(form: "inverse", threshold: 0.25, compressionRatio: 0.3, multipliers: [0, 0, 0, 1, 1, 1]))
        run.lossCurves = [HTMLReport.LossCurve(stage: "distill", kind: "distill", every: 1, points: [(1, 0.5), (2, 0.25)])]
        // The start of a 2×2 PNG (signature, IHDR): the page only reads the size and base64-encodes the bytes.
        let grid: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 2, 0, 0, 0, 2, 8, 0, 0, 0, 0]
        run.samples = [HTMLReport.SampleGrid(model: "teacher", digest: "d1", png: grid), HTMLReport.SampleGrid(model: "student", digest: "d1", png: grid)]
        run.metrics = [Metric(run: RunID("r-1"), stage: "evaluate", name: "teacher.params", value: 1000, unit: ""),
                       Metric(run: RunID("r-1"), stage: "evaluate", name: "student.params", value: 800, unit: "")]
        let page = HTMLReport.page([run])
        #expect(page.hasPrefix("<!DOCTYPE html>") && page.hasSuffix("</html>\n"))
        #expect(!page.contains("a<b>") && page.contains("a&lt;b&gt;&amp;&quot;c&quot;"))
        #expect(!page.lowercased().contains("<script") && !page.contains("<link") && !page.contains("url("))
        // The only absolute URL is the SVG namespace; every image is inline.
        let urls = page.components(separatedBy: "http").dropFirst().map { $0.prefix(24) }
        #expect(urls.allSatisfy { $0.hasPrefix("://www.w3.org/2000/svg\"") }, "\(urls)")
        #expect(page.components(separatedBy: "<img src=\"data:image/png;base64,").count == 2)   // the identical grid once
        #expect(page.contains("student: identical to a&lt;b&gt;&amp;&quot;c&quot; / teacher above."))
        #expect(page.contains("800<span class=\"delta\">−200 (−20.0 %)</span>"), "\(page)")
        #expect(page.contains("width=\"2\" height=\"2\" alt=\"sample grid of teacher"))
        #expect(page.contains("froze blocks 0, 1 and module prefixes <code>pos_embed.</code>"))
    }
}


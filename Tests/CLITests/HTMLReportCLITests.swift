// `hprune report --html` through the real binary on a real tiny run (the committed digits teacher: score blocks and
// sub-components → prune 30 % → PWP → SGDistill per component → evaluate with grids), run twice so the second run
// is all cache hits; then the page in headless Chromium (Debian `chromium`): no console message, a non-blank
// screenshot (decoded by PNGImage.decode). The Chromium test is skipped, saying so, only when chromium is missing.
import Foundation
import PNGSupport
import Testing
import TestSupport

/// The two runs and the page, made once for both tests.
struct TinyHTMLReport: Sendable {
    let dir: TemporaryDirectory
    let firstRun: String
    let secondRun: String
    let html: String
    let page: String
    let reportStderr: String
    let firstShowJSON: String

    static let shared: Result<TinyHTMLReport, any Error> = Result { try make() }

    static func make() throws -> TinyHTMLReport {
        let dir = TemporaryDirectory()
        let root = repositoryRoot().path
        let recipe = dir.write("tiny.yaml", """
            recipe: 1
            name: tiny-html
            seed: 0
            backend: cpu
            models: { teacher: { format: diffusers, path: \(root)/recipes/digits/teacher } }
            datasets:
              train: { path: \(root)/Examples/digits/digits-train.safetensors, format: safetensors }
              test: { path: \(root)/Examples/digits/digits-test.safetensors, format: safetensors }
            stages:
              score:
                kind: score
                model: teacher
                data: train
                samples: 4
                batch: 4
                components: [block, attn, ff, ff_context]
                metric: sample-mse
                sampling: { steps: 2, guidance: 0, shift: 3.0 }
                position_weight: { form: exponential, rate: -1.0 }
              prune: { kind: prune, model: teacher, scores: score, target: { params: 0.3 } }
              freeze: { kind: freeze, model: prune, policy: before-first-pruned }
              distill:
                kind: distill
                student: freeze
                teacher: teacher
                scores: score
                data: train
                steps: 6
                batch: 8
                sensitivity: { form: inverse, threshold: 0.25 }
                optimizer: { adamw: { lr: 1.0e-3 } }
              evaluate:
                kind: evaluate
                models: { teacher: teacher, pruned: prune, distilled: distill }
                data: test
                samples: 16
                batch: 16
                metrics: [memory, task]
                classifier: { data: train, hidden: 16, epochs: 2 }
                sampling: { steps: 2 }
                images: { columns: 3, rows: 4, scale: 2 }
            """)
        let store = dir.path + "/.hprune"
        func run() throws -> String {
            let r = try CLI.run(["run", recipe, "--json", "--store", store], timeout: 600)
            guard r.status == 0, let id = jsonObject(r.stdout)?["run"] as? String else {
                throw CLIFailure(message: "hprune run failed (\(r.status)): \(r.stderr)")
            }
            return id
        }
        let first = try run(), second = try run()
        let html = dir.path + "/out/report.html"
        let r = try CLI.run(["report", first, second, "--store", store, "--html", html])
        guard r.status == 0 else { throw CLIFailure(message: "hprune report --html failed (\(r.status)): \(r.stderr)") }
        let show = try CLI.run(["show", first, "--store", store, "--json"])
        return TinyHTMLReport(dir: dir, firstRun: first, secondRun: second, html: html,
                              page: try String(contentsOfFile: html, encoding: .utf8), reportStderr: r.stderr, firstShowJSON: show.stdout)
    }
}

struct CLIFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

@Test func htmlReportOfARealRunIsSelfContainedAndComplete() throws {
    let t = try TinyHTMLReport.shared.get()
    let page = t.page
    #expect(t.reportStderr.contains("wrote \(t.html)"))
    #expect(page.hasPrefix("<!DOCTYPE html>") && page.hasSuffix("</html>\n"))
    #expect(!page.lowercased().contains("<script") && !page.contains("<link") && !page.contains("url("))
    #expect(page.components(separatedBy: "http").dropFirst().allSatisfy { $0.hasPrefix("://www.w3.org/2000/svg\"") })
    // Both runs have every section, the second (all cached) from the executions that ran in the first.
    for id in [t.firstRun, t.secondRun] { #expect(page.contains("<code>\(id)</code>")) }
    #expect(page.components(separatedBy: "ΔP by block and component (sample-mse)</title>").count - 1 == 2)
    #expect(page.components(separatedBy: "<title>Training loss: distill (distill)</title>").count - 1 == 2)
    #expect(page.components(separatedBy: "<title>SGDistill update multipliers</title>").count - 1 == 2)
    #expect(page.components(separatedBy: "<title>Position weight W_pos by block</title>").count - 1 == 2)
    #expect(page.contains("Stage <code>prune</code> removed ") && page.contains("Stage <code>freeze</code> froze blocks 0"))
    // The sample grids: the first run's three, the second run's identical ones referenced, not repeated.
    #expect(page.components(separatedBy: "<img src=\"data:image/png;base64,").count - 1 == 3)
    #expect(page.contains("distilled: identical to tiny-html / distilled above."))
    // Metrics with deltas vs the teacher; the pruned model has fewer parameters.
    #expect(page.contains("<td>tiny-html</td><td>teacher</td><td class=\"num\">1008292</td>"), "\(page.prefix(3000))")
    #expect(page.contains("<span class=\"delta\">−"))
    // SGDistill per component (the score stage measured attn, ff, ff_context): the table and the ledger have them.
    #expect(page.contains(".attn</code></td>") && page.contains(".ff</code></td>") && page.contains(".rest</code></td>"))
    let show = try #require(jsonObject(t.firstShowJSON))
    let names = (show["metrics"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
    #expect(names.contains { $0.hasPrefix("sgdistill.blocks.") && $0.hasSuffix(".ff") }, "\(names)")
    // Every data: URI is a PNG our reader decodes to the grid's size.
    for part in page.components(separatedBy: "<img src=\"data:image/png;base64,").dropFirst() {
        let b64 = String(part.prefix { $0 != "\"" })
        let png = try PNGImage.decode([UInt8](try #require(Data(base64Encoded: b64))), source: "data: URI")
        #expect(png.width == 100 && png.height == 133)
    }
}

/// Debian's Chromium, or HPRUNE_CHROMIUM.
let chromiumPath: String? = {
    if let p = ProcessInfo.processInfo.environment["HPRUNE_CHROMIUM"] { return p }
    return ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
}()

/// Runs headless Chromium on `url` with `args`; returns stdout and stderr (its log, where console messages appear
/// as `:CONSOLE(…)]` lines with --enable-logging=stderr).
func chromium(_ url: URL, _ args: [String], profile: String) throws -> (status: Int32, stdout: String, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: chromiumPath ?? "/usr/bin/chromium")
    p.arguments = ["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--enable-logging=stderr", "--v=0",
                   "--user-data-dir=\(profile)"] + args + [url.absoluteString]
    let tmp = FileManager.default.temporaryDirectory
    let out = tmp.appendingPathComponent("chromium-\(UUID().uuidString).out"), err = tmp.appendingPathComponent("chromium-\(UUID().uuidString).err")
    FileManager.default.createFile(atPath: out.path, contents: nil)
    FileManager.default.createFile(atPath: err.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: out); try? FileManager.default.removeItem(at: err) }
    p.standardOutput = try FileHandle(forWritingTo: out)
    p.standardError = try FileHandle(forWritingTo: err)
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let deadline = Date().addingTimeInterval(120)
    while p.isRunning && Date() < deadline { usleep(20_000) }
    if p.isRunning { p.terminate() }
    p.waitUntilExit()
    return (p.terminationStatus, (try? String(contentsOf: out, encoding: .utf8)) ?? "", (try? String(contentsOf: err, encoding: .utf8)) ?? "")
}

/// Console lines of a Chromium log: messages, uncaught exceptions, failed loads.
func consoleLines(_ log: String) -> [String] {
    log.split(separator: "\n").map(String.init).filter { $0.contains(":CONSOLE") || $0.contains("Uncaught") || $0.contains("Failed to load resource") }
}

@Test(.enabled(if: chromiumPath != nil, "chromium is not installed: `apt-get install -y chromium` (.ci/run installs it) to run this check"))
func htmlReportLoadsInHeadlessChromiumWithoutConsoleErrors() throws {
    let t = try TinyHTMLReport.shared.get()
    let profile = t.dir.path + "/chromium-profile"
    // The detector works on this Chromium: a page with a console error and an uncaught exception is caught.
    let bad = URL(fileURLWithPath: t.dir.write("bad.html", "<!DOCTYPE html><html><body><script>console.error('probe'); missingFunction();</script></body></html>"))
    let probe = try chromium(bad, ["--dump-dom"], profile: profile)
    #expect(consoleLines(probe.stderr).contains { $0.contains("probe") } && consoleLines(probe.stderr).contains { $0.contains("Uncaught") },
            "the console detector saw nothing on a page that logs an error: \(probe.stderr.suffix(2000))")

    let page = URL(fileURLWithPath: t.html)
    let dom = try chromium(page, ["--dump-dom"], profile: profile)
    #expect(dom.status == 0, "\(dom.stderr.suffix(2000))")
    #expect(consoleLines(dom.stderr).isEmpty, "console: \(consoleLines(dom.stderr))")
    #expect(dom.stdout.contains("<h1>hprune report: tiny-html, tiny-html</h1>") && dom.stdout.contains("<svg"), "\(dom.stdout.prefix(500))")

    let shot = t.dir.path + "/shot.png"
    let s = try chromium(page, ["--window-size=1200,2400", "--hide-scrollbars", "--screenshot=\(shot)"], profile: profile)
    #expect(s.status == 0, "\(s.stderr.suffix(2000))")
    #expect(consoleLines(s.stderr).isEmpty, "console: \(consoleLines(s.stderr))")
    let image = try PNGImage.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: shot))), source: shot)
    #expect(image.width == 1200 && image.height == 2400)
    // Non-blank: many distinct colours (heat map, bars, text) and a fair share of non-white pixels.
    var colours = Set<UInt32>()
    var nonWhite = 0
    let c = image.channels
    for i in 0..<(image.width * image.height) {
        let p = image.pixels[(i * c)..<(i * c + c)]
        colours.insert(p.reduce(0) { $0 << 8 | UInt32($1) })
        if p.contains(where: { $0 < 240 }) { nonWhite += 1 }
    }
    let fraction = Double(nonWhite) / Double(image.width * image.height)
    #expect(colours.count > 100 && fraction > 0.03 && fraction < 0.9, "\(colours.count) colours, \(fraction) non-white")
}

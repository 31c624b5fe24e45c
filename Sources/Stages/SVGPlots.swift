// Inline SVG plots for `hprune report --html`: a heat map over block × component, bar charts and line charts,
// drawn by our own code with deterministic output (fixed number formats, no ids, no randomness) and accessible
// markup (role="img", a <title> first, axis labels, a <title> tooltip per mark).

import Foundation

/// Deterministic, self-contained SVG charts.
public enum SVGPlot {
    /// One cell of a heat map: its value (nil: not scored), tooltip text and whether it is marked (removed).
    public struct Cell: Sendable, Equatable {
        public var value: Double?
        public var tooltip: String
        public var marked: Bool
        public init(value: Double?, tooltip: String, marked: Bool) {
            self.value = value; self.tooltip = tooltip; self.marked = marked
        }
    }

    /// A heat map: `rows` labels top to bottom, `columns` labels left to right, `cells[r][c]` (nil: no such cell,
    /// drawn as an empty square). Values share one colour scale: blue for positive, orange for negative, white at 0,
    /// with a legend; marked cells get a red cross (`markLabel` in the legend).
    public static func heatMap(title: String, description: String, rows: [String], columns: [String], cells: [[Cell?]],
                               xLabel: String, yLabel: String, valueLabel: String, markLabel: String) -> String {
        let nc = max(1, columns.count)
        let cw = max(12.0, min(28.0, 760.0 / Double(nc))), ch = 22.0
        let left = 40.0 + Double(rows.map(\.count).max() ?? 4) * 7.0, top = 34.0
        let gridW = cw * Double(nc), gridH = ch * Double(rows.count)
        let lw = min(300.0, max(160.0, gridW * 0.6))   // legend bar width
        let width = max(left + gridW + 20, left + lw + 110, 40 + 8 * Double(title.count)), height = top + gridH + 118
        let values = cells.flatMap { $0 }.compactMap { $0?.value }.filter(\.isFinite)
        let lo = min(0, values.min() ?? 0), hi0 = max(0, values.max() ?? 0)
        let hi = hi0 == lo ? lo + 1 : hi0
        var s = open(width: width, height: height, title: title, description: description)
        s += text(width / 2, 20, title, anchor: "middle", size: 14, weight: "bold")
        // Row labels and the y axis title.
        for (r, label) in rows.enumerated() {
            s += text(left - 6, top + ch * (Double(r) + 0.5) + 4, label, anchor: "end", size: 11)
        }
        s += "<text x=\"12\" y=\"\(n(top + gridH / 2))\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 12 \(n(top + gridH / 2)))\">\(esc(yLabel))</text>\n"
        // Cells.
        for (r, row) in cells.enumerated() {
            for (c, cell) in row.enumerated() {
                let x = left + cw * Double(c), y = top + ch * Double(r)
                guard let cell else {
                    s += "<rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(cw))\" height=\"\(n(ch))\" fill=\"#ffffff\" stroke=\"#eeeeee\"/>\n"
                    continue
                }
                let fill = cell.value.map { colour($0, lo: lo, hi: hi) } ?? "#d9d9d9"
                s += "<g><title>\(esc(cell.tooltip))</title><rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(cw))\" height=\"\(n(ch))\" fill=\"\(fill)\" stroke=\"#ffffff\"/>"
                if cell.marked {
                    let p = 3.0
                    s += "<path d=\"M\(n(x + p)) \(n(y + p))L\(n(x + cw - p)) \(n(y + ch - p))M\(n(x + cw - p)) \(n(y + p))L\(n(x + p)) \(n(y + ch - p))\" stroke=\"#d62728\" stroke-width=\"2\"/>"
                }
                s += "</g>\n"
            }
        }
        // Column labels (thinned when there are many) and the x axis title.
        let every = nc > 40 ? 5 : (nc > 20 ? 2 : 1)
        for (c, label) in columns.enumerated() where c % every == 0 {
            s += text(left + cw * (Double(c) + 0.5), top + gridH + 14, label, anchor: "middle", size: 10)
        }
        s += text(left + gridW / 2, top + gridH + 32, xLabel, anchor: "middle", size: 12)
        // Legend: 24 swatches from lo to hi, tick labels, the not-scored swatch and the mark.
        let ly = top + gridH + 50, steps = 24
        s += text(left, ly - 4, valueLabel, anchor: "start", size: 11)
        for k in 0..<steps {
            let v = lo + (hi - lo) * (Double(k) + 0.5) / Double(steps)
            s += "<rect x=\"\(n(left + lw * Double(k) / Double(steps)))\" y=\"\(n(ly))\" width=\"\(n(lw / Double(steps) + 0.3))\" height=\"12\" fill=\"\(colour(v, lo: lo, hi: hi))\"/>\n"
        }
        s += "<rect x=\"\(n(left))\" y=\"\(n(ly))\" width=\"\(n(lw))\" height=\"12\" fill=\"none\" stroke=\"#888888\"/>\n"
        var ticks = [lo, hi]
        if lo < 0, lw * -lo / (hi - lo) > 36, lw * hi / (hi - lo) > 36 { ticks.insert(0, at: 1) }   // 0 only where its label fits
        for t in ticks {
            s += text(left + lw * (t - lo) / (hi - lo), ly + 26, label(t), anchor: "middle", size: 10)
        }
        let kx = left + lw + 24
        s += "<rect x=\"\(n(kx))\" y=\"\(n(ly))\" width=\"12\" height=\"12\" fill=\"#d9d9d9\"/>" + text(kx + 16, ly + 10, "not scored", anchor: "start", size: 10)
        s += "<path d=\"M\(n(kx + 1)) \(n(ly + 20))L\(n(kx + 11)) \(n(ly + 30))M\(n(kx + 11)) \(n(ly + 20))L\(n(kx + 1)) \(n(ly + 30))\" stroke=\"#d62728\" stroke-width=\"2\"/>"
            + text(kx + 16, ly + 29, markLabel, anchor: "start", size: 10)
        return s + "</svg>\n"
    }

    /// A bar chart of labelled values (one bar each, in order) from 0, with an optional dashed reference line.
    public static func bars(title: String, description: String, bars: [(label: String, value: Double, tooltip: String)],
                            xLabel: String, yLabel: String, reference: Double? = nil) -> String {
        let count = max(1, bars.count)
        let bw = max(8.0, min(30.0, 760.0 / Double(count))), left = 64.0, top = 34.0, plotH = 180.0
        let rotate = bars.contains { Double($0.label.count) * 6 > bw }
        let labelSpace = rotate ? 8.0 + 6.0 * Double(bars.map(\.label.count).max() ?? 1) : 18.0
        let plotW = bw * Double(count), width = max(left + plotW + 24, 2 * left + 7 * Double(max(xLabel.count, title.count)))
        let height = top + plotH + labelSpace + 30
        let top0 = max(bars.map(\.value).filter(\.isFinite).max() ?? 1, reference ?? 0, 0)
        let ticks = niceTicks(0, top0 > 0 ? top0 : 1, count: 5)
        let yMax = ticks.last ?? 1
        func y(_ v: Double) -> Double { top + plotH - plotH * v / yMax }
        var s = open(width: width, height: height, title: title, description: description)
        s += text(left + plotW / 2, 20, title, anchor: "middle", size: 14, weight: "bold")
        s += axes(left: left, top: top, width: plotW, height: plotH)
        for t in ticks {
            s += "<line x1=\"\(n(left - 4))\" y1=\"\(n(y(t)))\" x2=\"\(n(left))\" y2=\"\(n(y(t)))\" stroke=\"#333333\"/>" + text(left - 7, y(t) + 4, label(t), anchor: "end", size: 10)
        }
        for (i, b) in bars.enumerated() {
            let x = left + bw * Double(i), v = b.value.isFinite ? max(0, min(b.value, yMax)) : 0
            s += "<g><title>\(esc(b.tooltip))</title><rect x=\"\(n(x + bw * 0.12))\" y=\"\(n(y(v)))\" width=\"\(n(bw * 0.76))\" height=\"\(n(y(0) - y(v)))\" fill=\"#4878a8\"/></g>\n"
            let lx = x + bw / 2, ly = top + plotH + 12
            if rotate {
                s += "<text x=\"\(n(lx + 3))\" y=\"\(n(ly))\" font-size=\"10\" text-anchor=\"end\" transform=\"rotate(-60 \(n(lx + 3)) \(n(ly)))\">\(esc(b.label))</text>\n"
            } else {
                s += text(lx, ly, b.label, anchor: "middle", size: 10)
            }
        }
        if let reference {
            s += "<line x1=\"\(n(left))\" y1=\"\(n(y(reference)))\" x2=\"\(n(left + plotW))\" y2=\"\(n(y(reference)))\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"><title>\(esc("reference \(label(reference))"))</title></line>\n"
        }
        s += text(left + plotW / 2, height - 8, xLabel, anchor: "middle", size: 12)
        s += "<text x=\"14\" y=\"\(n(top + plotH / 2))\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(n(top + plotH / 2)))\">\(esc(yLabel))</text>\n"
        return s + "</svg>\n"
    }

    /// A line chart of series of (x, y) points; y on a log scale when every y is positive and they span more than
    /// a factor 20.
    public static func lines(title: String, description: String, series: [(name: String, points: [(x: Double, y: Double)])],
                             xLabel: String, yLabel: String) -> String {
        let left = 70.0, top = 34.0, plotW = 560.0, plotH = 220.0
        let width = left + plotW + 150, height = top + plotH + 50
        let pts = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        let xs = pts.map(\.x), ys = pts.map(\.y)
        let xTicks = niceTicks(min(0, xs.min() ?? 0), max(xs.max() ?? 1, 1), count: 6)
        let x0 = xTicks.first ?? 0, x1 = max(xTicks.last ?? 1, x0 + 1)
        let yLo = ys.min() ?? 0, yHi = ys.max() ?? 1
        let log = yLo > 0 && yHi / yLo > 20
        var yTicks: [Double]
        var y0: Double, y1: Double
        if log {
            let a = Foundation.floor(Foundation.log10(yLo)), b = Foundation.ceil(Foundation.log10(yHi))
            yTicks = stride(from: a, through: b, by: 1).map { Foundation.pow(10, $0) }
            y0 = a; y1 = max(b, a + 1)
        } else {
            yTicks = niceTicks(min(0, yLo), yHi > min(0, yLo) ? yHi : min(0, yLo) + 1, count: 5)
            y0 = yTicks.first ?? 0; y1 = max(yTicks.last ?? 1, y0 + 1e-12)
        }
        func px(_ x: Double) -> Double { left + plotW * (x - x0) / (x1 - x0) }
        func py(_ y: Double) -> Double {
            let v = log ? Foundation.log10(max(y, 1e-300)) : y
            return top + plotH - plotH * (v - y0) / (y1 - y0)
        }
        let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
        var s = open(width: width, height: height, title: title, description: description)
        s += text(left + plotW / 2, 20, title, anchor: "middle", size: 14, weight: "bold")
        s += axes(left: left, top: top, width: plotW, height: plotH)
        for t in xTicks {
            s += "<line x1=\"\(n(px(t)))\" y1=\"\(n(top + plotH))\" x2=\"\(n(px(t)))\" y2=\"\(n(top + plotH + 4))\" stroke=\"#333333\"/>" + text(px(t), top + plotH + 16, label(t), anchor: "middle", size: 10)
        }
        for t in yTicks {
            s += "<line x1=\"\(n(left - 4))\" y1=\"\(n(py(t)))\" x2=\"\(n(left))\" y2=\"\(n(py(t)))\" stroke=\"#333333\"/>" + text(left - 7, py(t) + 4, label(t), anchor: "end", size: 10)
        }
        for (i, sr) in series.enumerated() {
            let c = palette[i % palette.count]
            let d = sr.points.filter { $0.x.isFinite && $0.y.isFinite }.enumerated()
                .map { "\($0.offset == 0 ? "M" : "L")\(n(px($0.element.x))) \(n(py($0.element.y)))" }.joined()
            let last = sr.points.last.map { " (last: step \(label($0.x)), \(label($0.y)))" } ?? ""
            s += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(c)\" stroke-width=\"1.5\"><title>\(esc(sr.name + last))</title></path>\n"
            let ly = top + 12 + 18 * Double(i)
            s += "<line x1=\"\(n(left + plotW + 14))\" y1=\"\(n(ly - 4))\" x2=\"\(n(left + plotW + 34))\" y2=\"\(n(ly - 4))\" stroke=\"\(c)\" stroke-width=\"2\"/>"
                + text(left + plotW + 38, ly, sr.name, anchor: "start", size: 11)
        }
        s += text(left + plotW / 2, height - 8, xLabel, anchor: "middle", size: 12)
        let yTitle = log ? yLabel + " (log scale)" : yLabel
        s += "<text x=\"14\" y=\"\(n(top + plotH / 2))\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(n(top + plotH / 2)))\">\(esc(yTitle))</text>\n"
        return s + "</svg>\n"
    }

    // MARK: - Pieces

    /// Evenly spaced round ticks (steps of 1, 2 or 5 × 10^k) covering [lo, hi].
    static func niceTicks(_ lo: Double, _ hi: Double, count: Int) -> [Double] {
        guard hi > lo, lo.isFinite, hi.isFinite else { return [lo, lo + 1] }
        let raw = (hi - lo) / Double(max(1, count))
        let mag = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        let a = Foundation.floor(lo / step), b = Foundation.ceil(hi / step)
        return stride(from: a, through: b, by: 1).map { ($0 * step * 1e12).rounded() / 1e12 }
    }

    /// The colour of `v` on the diverging scale: white at 0, to dark blue at `hi` (> 0), to dark orange at `lo` (< 0).
    static func colour(_ v: Double, lo: Double, hi: Double) -> String {
        let white = (247.0, 251.0, 255.0), blue = (8.0, 48.0, 107.0), orange = (127.0, 39.0, 4.0)
        let (t, end) = v >= 0 ? (hi > 0 ? v / hi : 0, blue) : (lo < 0 ? v / lo : 0, orange)
        let k = Foundation.sqrt(max(0, min(1, t)))   // sqrt: small ΔP stay visible next to a large one
        func mix(_ a: Double, _ b: Double) -> Int { Int((a + (b - a) * k).rounded()) }
        return String(format: "#%02x%02x%02x", mix(white.0, end.0), mix(white.1, end.1), mix(white.2, end.2))
    }

    /// A number for a label: `%.3g`, and `0` for zero (no `-0`).
    static func label(_ v: Double) -> String {
        guard v.isFinite else { return v.isNaN ? "nan" : (v > 0 ? "inf" : "-inf") }
        return v == 0 ? "0" : String(format: "%.3g", v)
    }

    /// A coordinate: two decimals.
    static func n(_ v: Double) -> String { String(format: "%.2f", v) }

    /// XML text escaping (also for attribute values).
    public static func esc(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }

    static func open(width: Double, height: Double, title: String, description: String) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(n(width))\" height=\"\(n(height))\" viewBox=\"0 0 \(n(width)) \(n(height))\" role=\"img\" aria-label=\"\(esc(title))\" font-family=\"sans-serif\">\n"
            + "<title>\(esc(title))</title>\n<desc>\(esc(description))</desc>\n"
    }

    static func text(_ x: Double, _ y: Double, _ s: String, anchor: String, size: Int, weight: String? = nil) -> String {
        "<text x=\"\(n(x))\" y=\"\(n(y))\" font-size=\"\(size)\" text-anchor=\"\(anchor)\"\(weight.map { " font-weight=\"\($0)\"" } ?? "")>\(esc(s))</text>\n"
    }

    static func axes(left: Double, top: Double, width: Double, height: Double) -> String {
        "<path d=\"M\(n(left)) \(n(top))L\(n(left)) \(n(top + height))L\(n(left + width)) \(n(top + height))\" fill=\"none\" stroke=\"#333333\"/>\n"
    }
}

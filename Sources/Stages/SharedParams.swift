// Parameter value types shared by several stage kinds, defined once: their schema fields (with the defaults) and
// the typed values kinds decode them into with `ParamDecoder` (Sources/StageGraph/ParamDecoder.swift).
// A kind declares `Field`s from here instead of re-writing them, and reads `Params.sampling.steps` instead of
// `p["sampling"]?["steps"]?.int ?? 4`.
import StageGraph
import YAMLSupport

/// `sampling: { steps, guidance, shift }` — how samples are drawn (flow-matching Euler, fixed per-sample noise).
public struct SamplingSettings: Decodable, Sendable, Hashable {
    public var steps: Int
    /// SD3: classifier-free guidance scale (on when > 1); FLUX with a guidance embedding: the guidance value.
    public var guidance: Double
    /// Scheduler sigma shift s: σ' = s·σ / (1 + (s−1)·σ).
    public var shift: Double

    public static let defaultSteps = 4, defaultGuidance = 0.0, defaultShift = 3.0

    /// The `sampling` field; `guidanceDoc` lets a kind say what guidance means there.
    public static func field(doc: String, guidanceDoc: String) -> Field {
        Field("sampling", .object(Schema([
            Field("steps", .integer(min: 1, max: 1000), default: .int(defaultSteps), doc: "Euler steps."),
            Field("guidance", .number(min: 0), default: .double(defaultGuidance), doc: guidanceDoc),
            Field("shift", .number(min: 0, exclusive: true), default: .double(defaultShift),
                  doc: "Scheduler sigma shift s: σ' = s·σ / (1 + (s−1)·σ) (SD3.5 Large Turbo: 3.0)."),
        ])), default: .map([("steps", .int(defaultSteps)), ("guidance", .double(defaultGuidance)), ("shift", .double(defaultShift))]),
              doc: doc)
    }
}

/// `latent_size: [height, width]` of sampled latents (SD3: latent pixels; FLUX: token grid).
public struct LatentSize: Decodable, Sendable, Hashable {
    public var height: Int
    public var width: Int

    public init(height: Int, width: Int) {
        self.height = height
        self.width = width
    }

    public init(from decoder: Decoder) throws {
        var c = try decoder.unkeyedContainer()
        let h = try c.decode(Int.self), w = try c.decode(Int.self)
        guard c.isAtEnd else {
            throw ParamDecodingError(path: decoder.codingPath.map(\.stringValue).joined(separator: "."), message: "needs exactly [height, width]")
        }
        self.init(height: h, width: w)
    }

    public static func field(doc: String) -> Field {
        Field("latent_size", .list(.integer(min: 1), minCount: 2), doc: doc)
    }

    /// The schema says "at least 2"; this says "exactly 2", at the key's location.
    public static func check(_ params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        if let s = params["latent_size"]?.list, s.count != 2 {
            checker.error("'latent_size' needs exactly [height, width]", node["latent_size"]?.mark ?? node.mark)
        }
    }
}

/// A `.dictionary(.reference(…))` field in recipe order, e.g. evaluate's `models: {original: teacher, compressed: quantise}`
/// (a Swift dictionary would lose the order, and the first entry can mean something).
public struct NamedReferences: Decodable, Sendable, Hashable {
    public struct Entry: Sendable, Hashable {
        public var name: String
        /// The reference as written (`stage` or `stage.output`); bound as the input `<field>.<name>`.
        public var reference: String
    }

    public var entries: [Entry]
    public var names: [String] { entries.map(\.name) }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        entries = try c.allKeys.map { Entry(name: $0.stringValue, reference: try c.decode(String.self, forKey: $0)) }
    }
}

// Typed parameters for stage kinds: a kind declares `Params: Decodable` and reads `try params(ctx)` once at the
// top of `run`, instead of `p["x"]?.int ?? 4` reads that re-state the schema's defaults. The decoding
// (Sources/StageGraph/ParamDecoder.swift) takes every default from the kind's `schema`.
import Scheduler
import StageGraph

public protocol TypedStageKind: ExecutableStageKind {
    associatedtype Params: Decodable
}

extension TypedStageKind {
    /// The checked params of this stage as `Params`. A failure here is a bug in the kind (its `Params` and
    /// `schema` disagree), reported with the dotted path.
    public func params(_ ctx: StageContext) throws -> Params {
        try decodeParams(ctx.params)
    }

    /// The same for a bare `ParamValue` (tests, planning-time checks).
    public func decodeParams(_ value: ParamValue) throws -> Params {
        do {
            return try ParamDecoder.decode(Params.self, from: value, schema: schema)
        } catch let e as ParamDecodingError {
            throw StageFailure("internal error: kind '\(name)' cannot read its params: \(e)",
                               log: "this is a bug in hprune (the kind's Params and schema disagree); please report it with the recipe")
        }
    }
}

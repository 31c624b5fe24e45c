// ParamDecoder: typed params decoded from checked recipe values, defaults only from the schema.
import StageGraph
import Testing
import YAMLSupport

private enum Metric: String, CaseIterable, Decodable { case sampleMSE = "sample-mse", cosine }

private let schema = Schema([
    Field("model", .reference(.model), required: true, doc: "m"),
    Field("metric", .choice(of: Metric.self), default: .string("sample-mse"), doc: "m"),
    Field("checkpoint_every", .integer(min: 1), default: .int(100), doc: "c"),
    Field("lr", .number(), default: .int(1), doc: "an integer default read as a Double"),
    Field("note", .string, doc: "optional, no default"),
    Field("loss", .object(Schema([
        Field("form", .string, default: .string("hp"), doc: "f"),
        Field("feature", .number(min: 0), doc: "optional inside an object"),
    ])), doc: "an object with no default of its own"),
    Field("classifier", .object(Schema([Field("data", .reference(.dataset), required: true, doc: "d")])), doc: "presence means on"),
    Field("sigmas", .list(.number(), minCount: 1), default: .list([.double(0.25), .double(0.5)]), doc: "s"),
    Field("env", .dictionary(.string), default: .map([]), doc: "free keys"),
])

private struct Params: Decodable {
    struct Loss: Decodable { var form: String; var feature: Double? }
    struct Classifier: Decodable { var data: String }
    var model: String
    var metric: Metric
    var checkpointEvery: Int
    var lr: Double
    var note: String?
    var loss: Loss
    var classifier: Classifier?
    var sigmas: [Double]
    var env: [String: String]
}

private func checked(_ yaml: String) throws -> ParamValue {
    let node = try YAMLParser.parse(yaml, file: "t.yaml")
    var c = SchemaChecker(context: "stage 't'")
    let v = c.check(node, schema)
    #expect(c.diagnostics.isEmpty, "\(c.diagnostics)")
    return v
}

@Test func defaultsComeFromTheSchema() throws {
    let p = try ParamDecoder.decode(Params.self, from: try checked("model: teacher\n"), schema: schema)
    #expect(p.model == "teacher")
    #expect(p.metric == .sampleMSE)
    #expect(p.checkpointEvery == 100)
    #expect(p.lr == 1)
    #expect(p.note == nil)
    #expect(p.loss.form == "hp" && p.loss.feature == nil)   // absent object: its sub-schema's defaults
    #expect(p.classifier == nil)                              // absent optional object stays nil
    #expect(p.sigmas == [0.25, 0.5])
    #expect(p.env.isEmpty)
}

@Test func writtenValuesWin() throws {
    let p = try ParamDecoder.decode(Params.self, from: try checked("""
        model: m
        metric: cosine
        checkpoint_every: 7
        lr: 0.5
        note: hi
        loss: { feature: 0.001 }
        classifier: { data: digits }
        sigmas: [0.1]
        env: { A_B: x }
        """), schema: schema)
    #expect(p.metric == .cosine && p.checkpointEvery == 7 && p.lr == 0.5 && p.note == "hi")
    #expect(p.loss.form == "hp" && p.loss.feature == 0.001)
    #expect(p.classifier?.data == "digits")
    #expect(p.sigmas == [0.1])
    #expect(p.env == ["A_B": "x"])   // dictionary keys are taken as written, not case-converted
}

@Test func aPropertyTheSchemaLacksIsAProgrammingErrorNamingIt() throws {
    struct Bad: Decodable { var model: String; var stepsPerEpoch: Int }
    #expect {
        _ = try ParamDecoder.decode(Bad.self, from: try checked("model: m\n"), schema: schema)
    } throws: { e in
        (e as? ParamDecodingError)?.path == "steps_per_epoch"
    }
}

@Test func recipeKeysAreSnakeCase() {
    #expect(ParamDecoder.recipeKey("checkpointEvery") == "checkpoint_every")
    #expect(ParamDecoder.recipeKey("positionWeight") == "position_weight")
    #expect(ParamDecoder.recipeKey("steps") == "steps")
}

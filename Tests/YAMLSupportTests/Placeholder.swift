import Testing

@Test func placeholder_YAMLSupportTests() { #expect(Bool(true)) }

import Testing

@Test func placeholder_ArtifactStoreTests() { #expect(Bool(true)) }

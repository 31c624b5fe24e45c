import Testing

@Test func placeholder_TensorCoreTests() { #expect(Bool(true)) }

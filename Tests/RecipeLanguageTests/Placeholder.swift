import Testing

@Test func placeholder_RecipeLanguageTests() { #expect(Bool(true)) }

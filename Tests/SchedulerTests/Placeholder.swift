import Testing

@Test func placeholder_SchedulerTests() { #expect(Bool(true)) }

// Shared helpers for the CPU kernel tests: a deterministic random source, ISA iteration and comparisons.
import CPUKernels
import Testing

/// Small deterministic generator (SplitMix64) so failures reproduce.
struct Rand {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func float() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in float() * scale } }
}

/// The ISA paths this CPU can run, scalar first.
func availableISAs() -> [hp_isa] {
    [HP_ISA_SCALAR, HP_ISA_AVX2, HP_ISA_AVX512, HP_ISA_AVX512_BF16].filter { hp_isa_supported($0) != 0 }
}

/// The kernel families the tests run: the plain ones, the AMX family through its emulation twin (any CPU), and
/// the real AMX family where the CPU has it and the OS granted the tile permission.
func testedISAs() -> [hp_isa] {
    availableISAs() + [HP_ISA_AMX_EMU, HP_ISA_AMX].filter { hp_isa_supported($0) != 0 }
}

/// Which AMX variants this run exercises, for the test log.
let amxRunNote: String = {
    let note = hp_isa_supported(HP_ISA_AMX) != 0
        ? "AMX: real tiles (amx) and the emulation twin (amx_emu) both run"
        : "AMX: emulation twin only (amx_emu); this CPU has no usable AMX (features: \(String(cString: hp_cpu_features_string())))"
    print("[CPUKernelsTests] \(note)")
    return note
}()

/// Runs `body` once per tested ISA (forced), then restores automatic selection.
func forEachISA(_ body: (String) throws -> Void) rethrows {
    _ = amxRunNote
    defer { _ = hp_set_isa_override(HP_ISA_AUTO) }
    for isa in testedISAs() {
        #expect(hp_set_isa_override(isa) == 0)
        try body(String(cString: hp_isa_name(isa)))
    }
}

/// Runs `body` with the pool at `n` threads, then restores the default.
func withThreads<T>(_ n: Int32, _ body: () throws -> T) rethrows -> T {
    _ = hp_threads_init(n)
    defer { _ = hp_threads_init(0) }
    return try body()
}

func bf16(_ xs: [Float]) -> [UInt16] { xs.map { hp_f32_to_bf16($0) } }
func f32(_ xs: [UInt16]) -> [Float] { xs.map { hp_bf16_to_f32($0) } }

/// Largest |a - b| / (atol + rtol*|b|); <= 1 means within tolerance. NaN counts as a failure.
func worstRatio(_ a: [Float], _ b: [Float], atol: Float, rtol: Float) -> Float {
    precondition(a.count == b.count)
    var worst: Float = 0
    for i in a.indices {
        let r = abs(a[i] - b[i]) / (atol + rtol * abs(b[i]))
        if r.isNaN { return .infinity }
        worst = max(worst, r)
    }
    return worst
}

func bitsEqual(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

// What the CPU kernels chose on this machine: the kernel family per op (from the one dispatch table picked at
// start-up by feature score, or HPRUNE_ISA), each family's score, the caches the blocking was sized from, and
// the AMX status. `hprune backends` prints it. Also each family's numerics version, which action keys include.
import CPUKernels
import TensorCore

/// A snapshot of the CPU kernel dispatch for reports.
public struct CPUKernelReport: Sendable {
    /// One kernel family and whether/why it can run here.
    public struct FamilyInfo: Sendable {
        public let name: String
        public let supported: Bool
        /// Feature score (0 when this CPU cannot run it); the automatic choice is the best eligible one.
        public let score: Int
        public let autoEligible: Bool
        /// What the family is on this machine, for families that need saying (AMX).
        public let note: String?
    }

    /// The family the process dispatches to now (automatic, or HPRUNE_ISA).
    public let selected: String
    /// (op, family + microkernel) for the selected family.
    public let ops: [(op: String, family: String)]
    public let families: [FamilyInfo]
    public let vendor: String
    public let cpuFamily: Int, model: Int
    public let l1dBytes: Int, l2Bytes: Int, l3Bytes: Int
    public let cacheSource: String
    public let blocking: String

    /// The report for `family` (default: the selected one).
    public static func current(family: CPUBackend.Family = .auto) -> CPUKernelReport {
        let isa = family == .auto ? hp_selected_isa_id() : family.isa
        var ops: [(String, String)] = []
        for i in 0..<HP_KOP_COUNT.rawValue {
            let op = hp_kernel_op(i)
            guard let f = hp_kernel_op_family(isa, op) else { continue }
            ops.append((String(cString: hp_kernel_op_name(op)), String(cString: f)))
        }
        let amxHW = hp_isa_supported(HP_ISA_AMX) != 0
        let fams = CPUBackend.Family.allCases.filter { $0 != .auto }.map { f -> FamilyInfo in
            let note: String? = switch f {
            case .amx: amxHW ? "AMX tiles usable here; opt-in (HPRUNE_ISA=amx), never timed — unmeasured; real tdpbf16ps vs the emulation on a probe tile: "
                               + (hp_amx_selfcheck() == 1 ? "bit-identical" : "DIFFERENT (see Docs/performance.md)")
                             : "not on this CPU (needs amx_tile + amx_bf16 + the OS tile permission); emulation-verified only (amx_emu), never timed — unmeasured"
            case .amxEmu: "emulation-verified AMX code path on a scalar tile model: for tests, slow, not a fast path"
            default: nil
            }
            return FamilyInfo(name: f.rawValue, supported: f.isSupported, score: Int(hp_isa_score(f.isa)),
                              autoEligible: hp_isa_auto_eligible(f.isa) != 0, note: note)
        }
        let info = hp_cpu_info_get()!.pointee
        let vendor = withUnsafeBytes(of: info.vendor) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return CPUKernelReport(selected: String(cString: hp_isa_name(isa)), ops: ops, families: fams, vendor: vendor,
                               cpuFamily: Int(info.family), model: Int(info.model), l1dBytes: info.l1d, l2Bytes: info.l2,
                               l3Bytes: info.l3, cacheSource: String(cString: info.cache_source),
                               blocking: String(cString: info.blocking))
    }
}

// MARK: Numerics versions (part of every backend stage's action key)

extension CPUBackend.Family {
    /// The version of this family's numerics: identity `cpu.<name>` in action keys. **Bump a family's number when
    /// its results change in any bit** (a new microkernel shape or reduction order, another rounding or epilogue),
    /// so that artifacts cached from the old kernels are not reused; leave it when only speed changes.
    ///
    /// | family      | version | what it covers |
    /// |-------------|---------|----------------|
    /// | scalar      | 1       | portable C GEMM (4×16), attention, W4A16 |
    /// | avx2        | 1       | AVX2+FMA GEMM (6×16, bf16 converted to f32 when packing), attention, W4A16 |
    /// | avx512      | 1       | AVX-512 GEMM (14×32, bf16 converted to f32), attention, W4A16 |
    /// | avx512_bf16 | 1       | AVX-512 + vdpbf16ps: bf16 GEMM / attention in bf16 with f32 accumulation |
    /// | amx         | 1       | AMX-BF16 tiles for bf16 GEMM / attention / W4A16 (M > 16); the rest is avx512_bf16's |
    /// | amx_emu     | 1       | the AMX code path on emulated tiles; the rest is the best plain family's |
    public var numericsVersion: Int {
        switch self {
        case .auto: preconditionFailure("resolve `auto` to the selected family before asking for its numerics")
        case .scalar: 1
        case .avx2: 1
        case .avx512: 1
        case .avx512BF16: 1
        case .amx: 1
        case .amxEmu: 1
        }
    }

    /// `cpu.<name>`, the family's name in action keys.
    public var numericsIdentity: String { "cpu." + rawValue }

    /// The family of a C kernel id.
    init?(isa: hp_isa) { self.init(rawValue: String(cString: hp_isa_name(isa))) }
}

extension CPUBackend {
    /// The version of the CPU kernels every family shares (identity `cpu`): elementwise ops, norms, softmax,
    /// casts, Philox noise and AdamW in elementwise*.c. Bump it when any of their results change.
    public static let commonNumericsVersion = 1

    /// What a CPU backend running `family` computes with in this process: `tensorcore`, `cpu` (the shared kernels),
    /// the family that runs GEMM / attention / W4A16 (`.auto`: the one chosen at start-up, by feature score or
    /// HPRUNE_ISA) and, for the AMX families, the family they take everything else from. The fast kernels only:
    /// `Kernels.scalarTwins` is for tests and never runs a stage.
    ///
    ///     CPUBackend.numerics()   // [tensorcore 1, cpu 1, cpu.avx2 1] on the 2-core EPYC (its VM shows no AVX-512)
    public static func numerics(family: Family = .auto) -> [NumericsFamily] {
        let isa = family == .auto ? hp_selected_isa_id() : family.isa
        var out: [NumericsFamily] = [.tensorCore, NumericsFamily("cpu", commonNumericsVersion)]
        for id in [isa, hp_isa_base(isa)] where id != HP_ISA_AUTO {
            guard let f = Family(isa: id) else {
                preconditionFailure("CPU kernel family '\(String(cString: hp_isa_name(id)))' has no numerics version")
            }
            out.append(NumericsFamily(f.numericsIdentity, f.numericsVersion))
        }
        return out
    }
}

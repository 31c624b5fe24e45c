// Where stages run: `executor: local | slurm` at recipe level and `slurm: { partition, time, cpus, mem, gres,
// account, retries, extra: [...] }` at recipe level (defaults) and per stage (overrides). Checked here with
// marks; none of it enters an action key, so a stage has the same cache entry whichever executor ran it.
import YAMLSupport

/// Slurm resources for one stage's job; nil fields are left to the cluster's defaults.
public struct SlurmSettings: Sendable, Hashable {
    public var partition: String?
    /// `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM` or `D-HH:MM:SS` (sbatch `--time`).
    public var time: String?
    public var cpus: Int?
    /// `4000`, `4000M`, `16G`, … (sbatch `--mem`).
    public var mem: String?
    /// `gpu:1`, `gpu:a100:2`, … (sbatch `--gres`).
    public var gres: String?
    public var account: String?
    /// How often a job that dies without a result (node lost, time limit, scancel) is submitted again.
    public var retries: Int?
    /// Split a shardable stage (`score`) into a job array of this many tasks before its merge job.
    public var shards: Int?
    /// More sbatch options, each one argument starting with `--` (`--qos=high`, `--constraint=a100`).
    public var extra: [String]

    public init(partition: String? = nil, time: String? = nil, cpus: Int? = nil, mem: String? = nil,
                gres: String? = nil, account: String? = nil, retries: Int? = nil, shards: Int? = nil, extra: [String] = []) {
        self.partition = partition
        self.time = time
        self.cpus = cpus
        self.mem = mem
        self.gres = gres
        self.account = account
        self.retries = retries
        self.shards = shards
        self.extra = extra
    }

    /// These settings with every field `stage` sets replacing ours (`extra` is appended).
    public func overridden(by stage: SlurmSettings?) -> SlurmSettings {
        guard let stage else { return self }
        return SlurmSettings(partition: stage.partition ?? partition, time: stage.time ?? time, cpus: stage.cpus ?? cpus,
                             mem: stage.mem ?? mem, gres: stage.gres ?? gres, account: stage.account ?? account,
                             retries: stage.retries ?? retries, shards: stage.shards ?? shards, extra: extra + stage.extra)
    }

    /// The sbatch options these settings mean, one argument each (never a shell string).
    public var sbatchArguments: [String] {
        var args: [String] = []
        if let partition { args.append("--partition=" + partition) }
        if let time { args.append("--time=" + time) }
        if let cpus { args.append("--cpus-per-task=\(cpus)") }
        if let mem { args.append("--mem=" + mem) }
        if let gres { args.append("--gres=" + gres) }
        if let account { args.append("--account=" + account) }
        return args + extra
    }

    public static let keys = ["partition", "time", "cpus", "mem", "gres", "account", "retries", "shards", "extra"]
    public static let executors = ["local", "slurm"]

    /// Checks a `slurm:` mapping; problems go to `diagnostics` with the mark of the offending value.
    /// `context` is `slurm` or `stage 'x': slurm` for messages.
    public static func parse(_ node: YAMLNode, context: String, diagnostics: inout [Diagnostic]) -> SlurmSettings? {
        if node.isNull { return nil }
        guard let pairs = node.pairs else {
            diagnostics.append(.error("'\(context)': expected a mapping of sbatch settings, got \(node.typeDescription)",
                                      at: node.mark, hint: "e.g. 'slurm: { partition: gpu, time: \"2:00:00\", cpus: 8 }'"))
            return nil
        }
        var s = SlurmSettings()
        for pair in pairs {
            guard let key = pair.key.scalarText else { continue }
            let v = pair.value
            let label = "\(context).\(key)"
            func text(_ pattern: (String) -> Bool, _ what: String, hint: String? = nil) -> String? {
                guard v.isScalar, let t = v.string ?? v.scalarText, !t.isEmpty else {
                    diagnostics.append(.error("'\(label)': expected \(what), got \(v.typeDescription)", at: v.mark, hint: hint))
                    return nil
                }
                guard pattern(t) else {
                    diagnostics.append(.error("'\(label)': '\(t)' is not \(what)", at: v.mark, hint: hint))
                    return nil
                }
                return t
            }
            switch key {
            case "partition": s.partition = text(isName, "a partition name (letters, digits, '_', '-', '.')")
            case "account": s.account = text(isName, "an account name (letters, digits, '_', '-', '.')")
            case "time": s.time = text(isTime, "a Slurm time limit", hint: "write minutes (\"90\"), \"HH:MM:SS\" or \"D-HH:MM:SS\", quoted")
            case "mem": s.mem = text(isMemory, "a memory size", hint: "e.g. 16G, 4000M or 4000 (MiB)")
            case "gres": s.gres = text(isGres, "a generic resource", hint: "e.g. gpu:1 or gpu:a100:2")
            case "cpus", "retries", "shards":
                let minimum = key == "retries" ? 0 : 1
                guard let n = v.int, n >= minimum, n <= 4096 else {
                    diagnostics.append(.error("'\(label)': expected an integer ≥ \(minimum), got \(v.scalarText ?? v.typeDescription)", at: v.mark))
                    continue
                }
                switch key {
                case "cpus": s.cpus = n
                case "shards": s.shards = n
                default: s.retries = n
                }
            case "extra":
                guard let items = v.items else {
                    diagnostics.append(.error("'\(label)': expected a list of sbatch options, got \(v.typeDescription)", at: v.mark,
                                              hint: "e.g. extra: [\"--qos=high\", \"--constraint=a100\"]"))
                    continue
                }
                for item in items {
                    guard item.isScalar, let t = item.string, t.hasPrefix("--"), t.count > 2,
                          !t.contains(where: { $0 == "\n" || $0 == "\0" }) else {
                        diagnostics.append(.error("'\(label)': each item must be one sbatch option starting with '--', got \(item.scalarText.map { "'\($0)'" } ?? item.typeDescription)",
                                                  at: item.mark, hint: "write '--qos=high', one option per item"))
                        continue
                    }
                    if ["--wrap", "--export-file", "--chdir", "--output", "--error", "--parsable", "--array"]
                        .contains(where: { t == $0 || t.hasPrefix($0 + "=") }) {
                        diagnostics.append(.error("'\(label)': '\(t)' is set by hprune and cannot be overridden", at: item.mark))
                        continue
                    }
                    s.extra.append(t)
                }
            default:
                diagnostics.append(.error("'\(context)': unknown key '\(key)'", at: pair.key.mark,
                                          hint: Suggest.hint(for: key, in: keys) ?? "keys are " + keys.joined(separator: ", ")))
            }
        }
        return s
    }

    static func isName(_ t: String) -> Bool {
        t.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0) }
    }

    /// Slurm's formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or `infinite`/`UNLIMITED`.
    static func isTime(_ t: String) -> Bool {
        if ["infinite", "unlimited", "INFINITE", "UNLIMITED"].contains(t) { return true }
        let digits = { (s: Substring) in !s.isEmpty && s.count <= 6 && s.allSatisfy(\.isASCIIDigit) }
        let dayParts = t.split(separator: "-", omittingEmptySubsequences: false)
        guard dayParts.count <= 2 else { return false }
        if dayParts.count == 2 {
            guard digits(dayParts[0]) else { return false }
            let rest = dayParts[1].split(separator: ":", omittingEmptySubsequences: false)
            return (1...3).contains(rest.count) && rest.allSatisfy(digits)
        }
        let parts = t.split(separator: ":", omittingEmptySubsequences: false)
        return (1...3).contains(parts.count) && parts.allSatisfy(digits)
    }

    static func isMemory(_ t: String) -> Bool {
        var body = Substring(t)
        if let last = body.last, "KMGTkmgt".contains(last) { body = body.dropLast() }
        return !body.isEmpty && body.count <= 12 && body.allSatisfy(\.isASCIIDigit)
    }

    static func isGres(_ t: String) -> Bool {
        t.split(separator: ",").allSatisfy { one in
            let parts = one.split(separator: ":", omittingEmptySubsequences: false)
            return (1...3).contains(parts.count) && parts.allSatisfy { !$0.isEmpty && isName(String($0)) }
        }
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

// The list of backends `hprune backends` prints: each provider says whether it can run here, why not, and its
// features. Open to more entries: a module adds its provider to `BackendRegistry.standard` (CPUBackend module).

/// What `hprune backends [--json]` prints for one backend: `{"name", "available", "reason", "features"}`.
public struct BackendInfo: Sendable, Equatable, Codable {
    public var name: String
    public var available: Bool
    /// Why the backend is unavailable (nil when available).
    public var reason: String?
    /// Hardware / library features the backend will use (ISA extensions, GPU name, …).
    public var features: [String]

    public init(name: String, available: Bool, reason: String? = nil, features: [String] = []) {
        self.name = name
        self.available = available
        self.reason = reason
        self.features = features
    }

    enum CodingKeys: String, CodingKey { case name, available, reason, features }

    /// Encodes `reason` as JSON null when absent (the key is always present).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(available, forKey: .available)
        try c.encode(reason, forKey: .reason)
        try c.encode(features, forKey: .features)
    }
}

/// Something that can describe and create one kind of backend.
public protocol BackendProvider: Sendable {
    /// The backend's `name` ("cpu", "cuda", "reference").
    var name: String { get }
    /// Availability on this machine, probed without side effects worth mentioning.
    func info() -> BackendInfo
    /// Creates the backend; throws when it is unavailable.
    func make() throws -> any Backend
    /// The kernel families a backend made by `make()` in this process computes with, each with its numerics
    /// version (Numerics.swift): what enters the action keys of the stages run on it. Known without running an op
    /// (`hprune plan` needs it); throws when the backend is unavailable.
    func numerics() throws -> [NumericsFamily]
}

/// Provider of the scalar reference backend (always available).
public struct ReferenceBackendProvider: BackendProvider {
    public init() {}
    public var name: String { "reference" }
    public func info() -> BackendInfo { BackendInfo(name: name, available: true, features: ["scalar", "f64-accumulation"]) }
    public func make() throws -> any Backend { ReferenceBackend() }
    public func numerics() throws -> [NumericsFamily] { [.tensorCore, .reference] }
}

/// An ordered list of backend providers.
///
///     for b in BackendRegistry.available() { print(b.name, b.available) }
public struct BackendRegistry: Sendable {
    public var providers: [any BackendProvider]

    public init(_ providers: [any BackendProvider]) { self.providers = providers }

    /// Every provider's info, in order.
    public func infos() -> [BackendInfo] { providers.map { $0.info() } }

    /// Creates the backend called `name`; `auto` picks the first available one.
    public func make(_ name: String) throws -> any Backend {
        if name == "auto", let p = providers.first(where: { $0.info().available }) { return try p.make() }
        guard let p = providers.first(where: { $0.name == name }) else {
            throw RegistryError.unknown(name, known: providers.map(\.name))
        }
        let info = p.info()
        guard info.available else { throw RegistryError.unavailable(name, reason: info.reason ?? "unknown reason") }
        return try p.make()
    }

    /// The numerics families of the backend called `name` (not `auto`: resolve it first), sorted by identity.
    public func numerics(_ name: String) throws -> [NumericsFamily] {
        guard let p = providers.first(where: { $0.name == name }) else {
            throw RegistryError.unknown(name, known: providers.map(\.name))
        }
        return try p.numerics().sorted { $0.identity < $1.identity }
    }
}

/// Errors choosing a backend by name.
public enum RegistryError: Error, Equatable, CustomStringConvertible {
    case unknown(String, known: [String])
    case unavailable(String, reason: String)

    public var description: String {
        switch self {
        case .unknown(let n, let known):
            "unknown backend '\(n)'; choose one of: \((known + ["auto"]).joined(separator: ", ")) (see `hprune backends`)"
        case .unavailable(let n, let reason):
            "backend '\(n)' is not available on this machine: \(reason) (see `hprune backends`)"
        }
    }
}

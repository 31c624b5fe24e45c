// The YAML node tree every pipeline module reads: values plus the source mark of each node,
// so any later check can point at `file:line:col`. Produced by `YAMLParser` (libyaml).

/// Where a piece of input came from. Lines and columns are 1-based, as editors show them.
public struct SourceMark: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// A mark for values that came from no file (defaults, `--set` overrides name their origin in `file`).
    public static func synthetic(_ origin: String) -> SourceMark { SourceMark(file: origin, line: 0, column: 0) }

    public var description: String { line > 0 ? "\(file):\(line):\(column)" : file }
}

/// How a scalar was written; quoted scalars are always strings, plain ones are resolved by the YAML 1.2 core schema.
public enum ScalarStyle: Hashable, Sendable {
    case plain, singleQuoted, doubleQuoted, literal, folded
}

/// One node of a YAML document. Mappings keep their keys' order and each key's own mark.
public struct YAMLNode: Sendable, Hashable {
    public enum Value: Sendable, Hashable {
        case scalar(String, ScalarStyle)
        case sequence([YAMLNode])
        case mapping([YAMLPair])
    }

    public var value: Value
    public var mark: SourceMark
    /// An explicit tag such as `!!str`, if the document wrote one.
    public var tag: String?

    public init(_ value: Value, mark: SourceMark, tag: String? = nil) {
        self.value = value
        self.mark = mark
        self.tag = tag
    }
}

/// A key/value entry of a mapping; `key.mark` is where the key was written.
public struct YAMLPair: Sendable, Hashable {
    public var key: YAMLNode
    public var value: YAMLNode
    public init(key: YAMLNode, value: YAMLNode) {
        self.key = key
        self.value = value
    }
}

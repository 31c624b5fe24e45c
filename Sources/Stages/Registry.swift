// The one list of stage kinds this build can run. Adding a kind: write `Kinds/<Kind>Stage.swift`
// conforming to `ExecutableStageKind`, then add it here.
import Scheduler
import StageGraph

public enum StageKinds {
    public static let all: [any ExecutableStageKind] = [
        CommandStage(),
        PruneStage(),
        FreezeStage(),
        QuantiseStage(),
        ScoreStage(),
        DistillStage(),
        TrainStage(),
        EvaluateStage(),
    ]

    /// For checking and planning.
    public static var registry: StageRegistry { StageRegistry(all) }

    /// For running, by kind name.
    public static var executables: [String: any ExecutableStageKind] {
        Dictionary(all.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }
}

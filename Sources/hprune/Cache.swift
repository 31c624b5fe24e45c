// `hprune cache ls|du|verify|gc`: look after the content-addressed store.
import ArgumentParser
import ArtifactStore
import Foundation

struct Cache: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect and maintain the artifact store.",
        subcommands: [List.self, DiskUsage.self, Verify.self, GC.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List stored objects.")
        @OptionGroup var storeOptions: StoreOptions
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            let store = try storeOptions.openStandalone()
            let objects = try store.list()
            if json {
                Terminal.printJSON(objects.map { ["digest": $0.digest.hex, "size": $0.size] as [String: Any] })
                return
            }
            for o in objects { print("\(o.digest.hex)  \(Cache.bytes(o.size))") }
            print("\(objects.count) objects")
        }
    }

    struct DiskUsage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "du", abstract: "Show how much space the store uses.")
        @OptionGroup var storeOptions: StoreOptions
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            let store = try storeOptions.openStandalone()
            let u = try store.diskUsage()
            if json {
                Terminal.printJSON(["objects": u.objects, "object_bytes": u.objectBytes, "actions": u.actions,
                                    "action_bytes": u.actionBytes, "partials": u.partials, "partial_bytes": u.partialBytes,
                                    "tmp_files": u.tmpFiles, "tmp_bytes": u.tmpBytes,
                                    "ledger_bytes": u.ledgerBytes, "total_bytes": u.totalBytes])
                return
            }
            print("store    \(store.root.path)")
            print("objects  \(u.objects)  \(Cache.bytes(u.objectBytes))")
            print("actions  \(u.actions)  \(Cache.bytes(u.actionBytes))")
            print("partials \(u.partials)  \(Cache.bytes(u.partialBytes))  (records of resumable partial results; their bytes are objects)")
            print("ledger   \(Cache.bytes(u.ledgerBytes))")
            print("tmp      \(u.tmpFiles)  \(Cache.bytes(u.tmpBytes))")
            print("total    \(Cache.bytes(u.totalBytes))")
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-hash every object; evict corrupt objects and broken action or partial records (exit 1 if any were found).")
        @OptionGroup var storeOptions: StoreOptions
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            let store = try storeOptions.openStandalone()
            let r = try store.verify()
            if json {
                Terminal.printJSON(["clean": r.isClean, "objects_checked": r.objectsChecked, "bytes_checked": r.bytesChecked,
                                    "actions_checked": r.actionsChecked, "partials_checked": r.partialsChecked,
                                    "broken_partials": r.brokenPartials.map { "\($0)" },
                                    "corrupt_objects": r.corruptObjects.map { "\($0)" },
                                    "broken_actions": r.brokenActions.map { "\($0)" },
                                    "stray_files": r.strayFiles.map { "\($0)" },
                                    "stale_temp_files": r.staleTempFiles, "ledger_problems": r.ledgerProblems,
                                    "stale_stage_folders": r.staleStageDirectories])
            } else {
                print("checked \(r.objectsChecked) objects (\(Cache.bytes(r.bytesChecked))), \(r.actionsChecked) action records and \(r.partialsChecked) partial results")
                for p in r.corruptObjects { print("corrupt object (evicted): \(p)") }
                for p in r.brokenActions { print("broken action record (evicted): \(p)") }
                for p in r.brokenPartials { print("broken partial result (removed; its work is done again): \(p)") }
                for p in r.strayFiles { print("stray file: \(p)") }
                for p in r.ledgerProblems { print("ledger: \(p)") }
                for p in r.staleStageDirectories { print("stale stage folder (left by a killed run): \(p)") }
                if !r.staleStageDirectories.isEmpty {
                    print("\(r.staleStageDirectories.count) stale stage folder(s); `hprune cache gc` removes them")
                }
                print(r.isClean ? "store is intact" : "problems were found and repaired; affected stages will re-run")
            }
            if !r.isClean { throw Exit.failed }
        }
    }

    struct GC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Delete objects, action records and partial results that none of the recent runs use.")
        @OptionGroup var storeOptions: StoreOptions
        @Option(help: "Keep what the last N runs used.") var keepRuns: Int = 10
        @Flag(help: "Only report what would be deleted.") var dryRun = false
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            let store = try storeOptions.openStandalone()
            let r = try store.gc(keepingRuns: keepRuns, dryRun: dryRun)
            if json {
                Terminal.printJSON(["dry_run": r.dryRun, "kept_runs": r.keptRuns, "kept_objects": r.keptObjects,
                                    "kept_bytes": r.keptBytes, "removed_actions": r.removedActions,
                                    "removed_objects": r.removedObjects.map(\.hex), "removed_bytes": r.removedBytes,
                                    "kept_partials": r.keptPartials, "removed_partials": r.removedPartials,
                                    "stale_stage_folders": r.staleStageDirectories])
                return
            }
            let verb = dryRun ? "would remove" : "removed"
            print("\(verb) \(r.removedObjects.count) objects (\(Cache.bytes(r.removedBytes))), \(r.removedActions.count) action records and \(r.removedPartials.count) partial-result namespaces; kept \(r.keptObjects) objects used by \(r.keptRuns.count) runs")
            if !r.staleStageDirectories.isEmpty {
                print("\(verb) \(r.staleStageDirectories.count) stale stage folder(s) left by killed runs")
            }
        }
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }
}

// Tests of CPU feature detection, ISA override and the thread pool.
import CPUKernels
import Foundation
import Testing

/// Every kernel suite nests here: the ISA override and the pool size are process-wide, so the suites must not
/// run at the same time.
@Suite(.serialized) enum CPUKernelSuites {}

extension CPUKernelSuites {
@Suite struct DispatchAndPoolTests {
    @Test func featuresAndSelection() {
        let names = String(cString: hp_cpu_features_string())
        #if arch(x86_64)
        #expect(names.contains("sse2"))
        #expect(hp_isa_supported(HP_ISA_NEON) == 0)
        #expect(Int(hp_set_isa_override(HP_ISA_NEON)) == HP_EUNSUPPORTED)
        #endif
        #expect(hp_isa_supported(hp_selected_isa_id()) != 0)
        #expect(hp_set_isa_override(HP_ISA_SCALAR) == 0)
        #expect(String(cString: hp_selected_isa()) == "scalar")
        #expect(hp_set_isa_override(HP_ISA_AUTO) == 0)
        #expect(String(cString: hp_selected_isa()) == String(cString: hp_isa_name(availableISAs().last!)))
    }

    @Test func overrideIsPerThread() {
        let best = String(cString: hp_isa_name(availableISAs().last!))
        #expect(hp_set_isa_override(HP_ISA_SCALAR) == 0)
        defer { _ = hp_set_isa_override(HP_ISA_AUTO) }
        let seen = LockedBox("")
        let done = DispatchSemaphore(value: 0)
        let t = Thread {
            seen.set(String(cString: hp_selected_isa()))
            done.signal()
        }
        t.start()
        done.wait()
        #expect(String(cString: hp_selected_isa()) == "scalar")
        #expect(seen.get() == best)
    }

    @Test func parallelForRunsEveryTaskOnce() {
        for threads: Int32 in [1, 2, 3] {
            withThreads(threads) {
                #expect(hp_threads_count() == threads)
                let n = 1000
                var hits = [Int32](repeating: 0, count: n)
                hits.withUnsafeMutableBufferPointer { buf in
                    hp_parallel_for(n, { ctx, task, thread in
                        let p = ctx!.assumingMemoryBound(to: Int32.self)
                        p[task] += 1 + thread * 0  // each task writes only its own slot
                    }, buf.baseAddress)
                }
                #expect(hits.allSatisfy { $0 == 1 })
            }
        }
    }

    @Test func buffersCanBeReleasedBetweenCalls() {
        var rng = Rand(5)
        let a = rng.floats(64 * 64), b = rng.floats(64 * 64)
        var c1 = [Float](repeating: 0, count: 64 * 64), c2 = c1
        #expect(hp_gemm_f32(0, 0, 64, 64, 64, 1, a, 64, b, 64, 0, &c1, 64, nil, HP_ACT_NONE) == 0)
        hp_release_thread_buffers()
        #expect(hp_gemm_f32(0, 0, 64, 64, 64, 1, a, 64, b, 64, 0, &c2, 64, nil, HP_ACT_NONE) == 0)
        #expect(bitsEqual(c1, c2))
    }

    @Test func nestedParallelForRunsInline() {
        withThreads(2) {
            var out = [Int](repeating: 0, count: 16)
            out.withUnsafeMutableBufferPointer { buf in
                hp_parallel_for(4, { ctx, task, _ in
                    // Inner call from inside a task: must complete (serially) without deadlock.
                    var inner = (ctx!, task)
                    withUnsafeMutablePointer(to: &inner) { ip in
                        hp_parallel_for(4, { c2, t2, _ in
                            let pair = c2!.assumingMemoryBound(to: (UnsafeMutableRawPointer, Int).self).pointee
                            pair.0.assumingMemoryBound(to: Int.self)[pair.1 * 4 + t2] = pair.1 * 4 + t2 + 1
                        }, ip)
                    }
                }, buf.baseAddress)
            }
            #expect(out == Array(1...16))
        }
    }
}
}

/// A value shared with another thread under a lock.
final class LockedBox<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ v: T) { value = v }
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
}

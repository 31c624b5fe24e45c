// Errors: an op a backend lacks fails loudly with its name and the backend's; bad shapes and read-only storage
// are reported, never crashed on.
import CPUBackend
import Foundation
import Testing
import TensorCore

/// A backend with storage but no ops: what a new GPU backend looks like on day one (every op from the protocol's
/// defaults). The real CUDA backend does not exist on this machine, so this is the smallest real conformer.
final class EmptyBackend: HostBackend, @unchecked Sendable {
    let name = "cuda"
    let displayName = "CUDA"
    let supportedOps: Set<Op> = [.add]
    func add(_ a: Tensor, _ b: Tensor) throws -> Tensor { try ReferenceBackend().add(a, b) }
}

@Suite("Backend errors")
struct ErrorTests {
    @Test("an unsupported op throws unsupported(op, backend:) with a readable message")
    func unsupported() throws {
        let be = EmptyBackend()
        let x = try be.tensor([1, 2, 3, 4], shape: [1, 1, 2, 2])
        #expect(!be.supports(.attentionBackward))
        #expect(be.supports(.add))
        #expect(throws: BackendError.unsupported(.attentionBackward, backend: "CUDA")) {
            _ = try be.attentionBackward(x, x, x, x, out: x, lse: x, scale: 1)
        }
        #expect(BackendError.unsupported(.attentionBackward, backend: "CUDA").description
                == "op attentionBackward has no CUDA implementation")
        #expect(throws: BackendError.unsupported(.gelu, backend: "CUDA")) { _ = try be.gelu(x) }
        #expect(try be.floats(try be.add(x, x)) == [2, 4, 6, 8])
    }

    @Test("every op without an implementation throws unsupported (no silent fallback)")
    func everyOpThrows() throws {
        let be = EmptyBackend(), x = try be.tensor([1, 2], shape: [1, 1, 1, 2])
        let calls: [(Op, () throws -> Void)] = [
            (.cast, { _ = try be.cast(x, to: .bf16) }), (.transpose, { _ = try be.transpose(x, [0, 1, 2, 3]) }),
            (.concat, { _ = try be.concat([x], axis: 0) }), (.slice, { _ = try be.slice(x, axis: 0, start: 0, length: 1) }),
            (.matmul, { _ = try be.linear(x, weight: x.reshaped([1, 2]), bias: nil) }),
            (.layerNorm, { _ = try be.layerNorm(x, eps: 1e-6) }), (.rope, { _ = try be.rope(x, cos: x, sin: x) }),
            (.adamw, { try be.adamw(param: x, grad: x, m: x, v: x, step: 1, config: AdamWConfig()) }),
            (.randomNormal, { _ = try be.randomNormal([2], seed: 0, offset: 0) }),
        ]
        for (op, call) in calls { #expect(throws: BackendError.unsupported(op, backend: "CUDA")) { try call() } }
    }

    @Test("shape mistakes throw invalidArgument naming the shapes, on every backend")
    func shapes() throws {
        for be in [ReferenceBackend(), CPUBackend()] as [any Backend] {
            let a = try be.zeros([2, 3], dtype: .f32), b = try be.zeros([4, 5], dtype: .f32)
            do {
                _ = try be.matmul(a, b, transposeA: false, transposeB: false, bias: nil, activation: .none)
                Issue.record("expected an error")
            } catch let e as BackendError {
                #expect(e.description.contains("(2,3)") && e.description.contains("(4,5)"), "\(e)")
            }
            #expect(throws: BackendError.self) { _ = try be.add(a, b) }
            #expect(throws: BackendError.self) { _ = try be.transpose(a, [0, 0]) }
            #expect(throws: BackendError.self) { _ = try be.sum(a, axes: [2]) }
            #expect(throws: BackendError.unsupportedDType(.gelu, .bf16, backend: be.displayName)) {
                _ = try be.gelu(try be.zeros([2], dtype: .bf16))
            }
        }
    }

    @Test("in-place ops refuse read-only (memory-mapped) storage")
    func readOnly() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("hprune-ro-\(UUID()).bin").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let values: [Float] = [1, 2, 3, 4]
        FileManager.default.createFile(atPath: path, contents: values.withUnsafeBytes { Data($0) })
        let cpu = CPUBackend()
        let mapped = Tensor(storage: try HostStorage(mapping: path, offset: 0, length: 16), shape: [4], dtype: .f32)
        #expect(throws: BackendError.readOnly(.axpy)) { try cpu.axpy(mapped, alpha: 1, mapped) }
        #expect(try cpu.floats(try cpu.scale(mapped, 2)) == [2, 4, 6, 8])     // reading is fine
    }
}

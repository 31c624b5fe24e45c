// HostBufferPool: large freed buffers are reused by size, small ones never kept, the byte budget holds (oldest
// evicted first), and a recycled buffer asked for zeroed comes back zeroed.
import Foundation
import Testing
@testable import TensorCore

@Suite("Host buffer recycling")
struct BufferPoolTests {
    let mib = 1 << 20

    @Test func largeBuffersAreReusedBySizeAndSmallOnesAreNot() throws {
        let pool = HostBufferPool(capacityBytes: 8 * mib)
        let p = UnsafeMutableRawPointer.allocate(byteCount: HostBufferPool.roundedSize(2 * mib + 3), alignment: 64)
        #expect(pool.give(p, 2 * mib + 3))
        #expect(pool.keptBytes == 2 * mib + 4096)
        #expect(pool.take(3 * mib) == nil)                // another size
        #expect(pool.take(2 * mib + 100) == p)            // same page-rounded size
        #expect(pool.keptBytes == 0)
        let small = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 64)
        #expect(!pool.give(small, 4096))                  // below 1 MiB: the caller frees it
        small.deallocate()
        p.deallocate()
    }

    @Test func theBudgetHoldsOldestFirst() throws {
        let pool = HostBufferPool(capacityBytes: 5 * mib)
        let a = UnsafeMutableRawPointer.allocate(byteCount: 2 * mib, alignment: 64)
        let b = UnsafeMutableRawPointer.allocate(byteCount: 2 * mib, alignment: 64)
        let c = UnsafeMutableRawPointer.allocate(byteCount: 2 * mib, alignment: 64)
        #expect(pool.give(a, 2 * mib) && pool.give(b, 2 * mib) && pool.give(c, 2 * mib))   // a is evicted (freed)
        #expect(pool.keptBytes == 4 * mib)
        #expect(pool.take(2 * mib) == c)                   // most recent first
        #expect(pool.take(2 * mib) == b)
        #expect(pool.take(2 * mib) == nil)
        let big = UnsafeMutableRawPointer.allocate(byteCount: 6 * mib, alignment: 64)
        #expect(!pool.give(big, 6 * mib))                  // larger than the whole budget
        big.deallocate(); b.deallocate(); c.deallocate()
        let off = HostBufferPool(capacityBytes: 0)
        #expect(off.take(2 * mib) == nil)
        pool.drain()
        #expect(pool.keptBytes == 0)
    }

    @Test func aRecycledStorageComesBackZeroedWhenAsked() throws {
        let n = 3 * mib + 12_345   // a size no other test allocates
        var first: UnsafeMutableRawPointer?
        do {
            let s = try HostStorage(byteCount: n, zeroed: false)
            memset(s.base, 0xAB, n)
            first = s.base
        }
        let again = try HostStorage(byteCount: n, zeroed: true)
        #expect(again.base == first, "the freed buffer was not recycled")
        let bytes = again.base.assumingMemoryBound(to: UInt8.self)
        #expect((0..<n).allSatisfy { bytes[$0] == 0 })
        let raw = try HostStorage(byteCount: n, zeroed: false)
        #expect(raw.byteCount == n)
    }
}

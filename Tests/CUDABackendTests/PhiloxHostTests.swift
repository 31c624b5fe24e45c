// The CUDA Philox kernel's own source, compiled for the host with a small shim (the __dadd_rn-style intrinsics as
// plain IEEE double operations, one thread looping over the grid) and run against Philox.swift bit for bit. Checks
// everything about `hp_randn` but the GPU's IEEE compliance, which the _rn intrinsics and -fmad=false pin down.
import CUDABackend
import Foundation
import Testing
import TensorCore

/// A host C++ compiler, if any.
let hostCXX: String? = ["/opt/swift/usr/bin/clang++", "/usr/bin/clang++", "/usr/bin/g++"].first {
    FileManager.default.isExecutableFile(atPath: $0)
} ?? ProcessInfo.processInfo.environment["CXX"]

@Suite("CUDA Philox kernel source on the host vs Philox.swift")
struct PhiloxHostTests {
    static let shim = #"""
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
typedef long long i64;
typedef unsigned long long u64;
#define __global__
#define __device__
#define __forceinline__ inline
#define __constant__ static const
struct hp_dim3 { unsigned x, y, z; };
static const hp_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __dsqrt_rn(double a) { return std::sqrt(a); }
static inline float __double2float_rn(double a) { return (float)a; }
static inline long long __double_as_longlong(double d) { long long r; std::memcpy(&r, &d, 8); return r; }
static inline double __longlong_as_double(long long v) { double r; std::memcpy(&r, &v, 8); return r; }
#define GRID_STRIDE(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)
"""#
    static let main = #"""
int main(int argc, char **argv) {
    const i64 n = atoll(argv[1]);
    const u64 seed = strtoull(argv[2], 0, 0), offset = strtoull(argv[3], 0, 0);
    float *y = (float *)malloc(sizeof(float) * n);
    hp_randn(y, n, seed, offset);
    for (i64 i = 0; i < n; i++) { unsigned b; std::memcpy(&b, &y[i], 4); printf("%08x\n", b); }
    return 0;
}
"""#

    @Test("hp_randn's source reproduces Philox.normal exactly", .enabled(if: hostCXX != nil))
    func bitIdentical() throws {
        let dir = NSTemporaryDirectory() + "hprune-philox-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let family = try #require(KernelFamily.all.first { $0.name == "philox" })
        let src = Self.shim + "\n" + family.body.replacingOccurrences(of: "extern \"C\" ", with: "") + "\n" + Self.main
        try src.write(toFile: "\(dir)/randn.cpp", atomically: true, encoding: .utf8)
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: hostCXX!)
        cc.arguments = ["-std=c++17", "-O1", "-ffp-contract=off", "-o", "\(dir)/randn", "\(dir)/randn.cpp"]
        try cc.run()
        cc.waitUntilExit()
        try #require(cc.terminationStatus == 0, "the host shim build of the Philox kernel failed")
        for (seed, offset, n) in [(UInt64(42), UInt64(0), 1027), (0xDEAD_BEEF_0000_0001, 3, 515), (7, (1 << 33) - 5, 64)] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "\(dir)/randn")
            p.arguments = [String(n), String(seed), String(offset)]
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            let bits = out.split(separator: "\n").map { UInt32($0, radix: 16)! }
            #expect(bits.count == n)
            for i in 0..<min(n, bits.count) {
                let want = Philox.normal(seed: seed, index: offset &+ UInt64(i)).bitPattern
                if bits[i] != want {
                    Issue.record("seed \(seed) offset \(offset) i \(i): kernel \(String(bits[i], radix: 16)) vs Philox.swift \(String(want, radix: 16))")
                    break
                }
            }
        }
    }
}

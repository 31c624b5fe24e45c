// Fréchet distance between two sets of feature vectors (the FID formula on any features):
// ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2·(Σ₁Σ₂)^½), with Tr (Σ₁Σ₂)^½ = Σ √λ of Σ₁^½ Σ₂ Σ₁^½ (symmetric, so Jacobi).

import Foundation

/// Fréchet distance of two feature sets, each [N·dim] row-major (N ≥ 2 rows each).
/// - Throws: `ClassifierError` when a set is not a whole number of rows or has fewer than 2.
public func frechetDistance(_ a: [Float], _ b: [Float], dim: Int) throws -> Double {
    guard dim > 0, a.count % dim == 0, b.count % dim == 0, a.count / dim >= 2, b.count / dim >= 2 else {
        throw ClassifierError("Fréchet distance needs at least 2 rows of \(dim) features per set, got \(a.count) and \(b.count) values")
    }
    let (m1, s1) = meanAndCovariance(a, dim: dim), (m2, s2) = meanAndCovariance(b, dim: dim)
    var meanTerm = 0.0
    for i in 0..<dim { meanTerm += (m1[i] - m2[i]) * (m1[i] - m2[i]) }
    var trace = 0.0
    for i in 0..<dim { trace += s1[i * dim + i] + s2[i * dim + i] }
    let root1 = symmetricSqrt(s1, dim)
    let inner = matmul(matmul(root1, s2, dim), root1, dim)              // Σ₁^½ Σ₂ Σ₁^½, symmetric PSD
    let (eig, _) = jacobiEigen(inner, dim)
    let traceSqrt = eig.reduce(0.0) { $0 + max(0, $1).squareRoot() }
    return max(0, meanTerm + trace - 2 * traceSqrt)
}

/// Mean [dim] and unbiased covariance [dim·dim] of rows [N·dim], in Double.
func meanAndCovariance(_ x: [Float], dim: Int) -> ([Double], [Double]) {
    let n = x.count / dim
    var mean = [Double](repeating: 0, count: dim)
    for r in 0..<n { for i in 0..<dim { mean[i] += Double(x[r * dim + i]) } }
    for i in 0..<dim { mean[i] /= Double(n) }
    var cov = [Double](repeating: 0, count: dim * dim)
    var c = [Double](repeating: 0, count: dim)
    for r in 0..<n {
        for i in 0..<dim { c[i] = Double(x[r * dim + i]) - mean[i] }
        for i in 0..<dim where c[i] != 0 { for j in i..<dim { cov[i * dim + j] += c[i] * c[j] } }
    }
    for i in 0..<dim { for j in i..<dim { cov[i * dim + j] /= Double(n - 1); cov[j * dim + i] = cov[i * dim + j] } }
    return (mean, cov)
}

/// Square root of a symmetric PSD matrix [n·n]: V·diag(√max(λ,0))·Vᵀ.
func symmetricSqrt(_ a: [Double], _ n: Int) -> [Double] {
    let (eig, vecs) = jacobiEigen(a, n)
    var out = [Double](repeating: 0, count: n * n)
    for k in 0..<n {
        let s = max(0, eig[k]).squareRoot()
        if s == 0 { continue }
        for i in 0..<n { let vi = vecs[i * n + k] * s; for j in 0..<n { out[i * n + j] += vi * vecs[j * n + k] } }
    }
    return out
}

/// C = A·B for [n·n] matrices.
func matmul(_ a: [Double], _ b: [Double], _ n: Int) -> [Double] {
    var c = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for k in 0..<n { let aik = a[i * n + k]; if aik == 0 { continue }; for j in 0..<n { c[i * n + j] += aik * b[k * n + j] } } }
    return c
}

/// Eigenvalues and eigenvectors (columns of V, [n·n]) of a symmetric matrix, by cyclic Jacobi rotations.
func jacobiEigen(_ input: [Double], _ n: Int, sweeps: Int = 100) -> ([Double], [Double]) {
    var a = input
    var v = [Double](repeating: 0, count: n * n)
    for i in 0..<n { v[i * n + i] = 1 }
    for _ in 0..<sweeps {
        var off = 0.0, total = 0.0
        for i in 0..<n { for j in 0..<n { let x = a[i * n + j] * a[i * n + j]; total += x; if i != j { off += x } } }
        if off <= 1e-22 * max(total, 1e-300) { break }
        for p in 0..<(n - 1) {
            for q in (p + 1)..<n {
                let apq = a[p * n + q]
                if abs(apq) < 1e-300 { continue }
                let theta = (a[q * n + q] - a[p * n + p]) / (2 * apq)
                let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                let c = 1 / (t * t + 1).squareRoot(), s = t * c
                for k in 0..<n {                                     // A ← A·J (columns p, q)
                    let akp = a[k * n + p], akq = a[k * n + q]
                    a[k * n + p] = c * akp - s * akq
                    a[k * n + q] = s * akp + c * akq
                }
                for k in 0..<n {                                     // A ← Jᵀ·A (rows p, q)
                    let apk = a[p * n + k], aqk = a[q * n + k]
                    a[p * n + k] = c * apk - s * aqk
                    a[q * n + k] = s * apk + c * aqk
                }
                for k in 0..<n {                                     // V ← V·J
                    let vkp = v[k * n + p], vkq = v[k * n + q]
                    v[k * n + p] = c * vkp - s * vkq
                    v[k * n + q] = s * vkp + c * vkq
                }
            }
        }
    }
    return ((0..<n).map { a[$0 * n + $0] }, v)
}

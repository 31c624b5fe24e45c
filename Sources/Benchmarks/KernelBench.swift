// Kernel benchmarks (filled in below).
import CPUKernels

// CPU kernels: the C API the CPU backend calls.
#pragma once
int hp_kernels_version(void);

// kernels.cu — the CuPy backend's CUDA kernels, compiled at run time by NVRTC
// (fastnn/_backends/_cuda_src.py builds the program: this file with the files it includes
// inlined, the options, and one name expression per kernel and dtype). The kernels live in
// activation.cu, dense.cu and loss.cu, their shared helpers in common.cuh.
//
// Every formula comes from scalar_math.h, the header the C++ CPU backend uses; this file
// only loops, reduces and dispatches on the activation / loss code. Codes are the
// indices of fastnn/_registry.py; every dispatch iterates the lists of the generated
// fastnn/op_table.h (Act, Loss, FASTNN_ELEMENTWISE_ACTIVATIONS, ...).
//
// Conventions:
//  * 1-D blocks of a power-of-two size (32..1024); grid-stride loops with 64-bit indices.
//  * Reductions go through shared memory in a fixed tree order (no atomics, no warp
//    shuffles): results are bit-identical run to run, and the kernels run unchanged on
//    the CPU emulator of tests/cuda_emu (std::thread per CUDA thread, __syncthreads as a
//    barrier), which checks them against the C++ backend without a GPU.
//  * Pointers that may be absent are passed as null (0) and tested uniformly per kernel.
//  * Every kernel whose blocks synchronize returns only after its block-wide loop, never
//    from inside a branch that some threads of the block skip.
#include "common.cuh"
#include "activation.cu"
#include "dense.cu"
#include "loss.cu"

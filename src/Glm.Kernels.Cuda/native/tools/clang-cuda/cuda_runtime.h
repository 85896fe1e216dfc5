// Declarations of the CUDA runtime and device functions the kernels use, enough for clang's CUDA front end to
// parse and type-check src/*.cu on a machine without the CUDA toolkit (check-cuda-syntax.sh). Never linked, never
// run: nvcc with the real toolkit builds the library. Add a declaration here when a kernel starts using one.
#pragma once
#include <stddef.h>
#include <stdint.h>
#define __CUDACC__ 1
#define __host__ __attribute__((host))
#define __device__ __attribute__((device))
#define __global__ __attribute__((global))
#define __shared__ __attribute__((shared))
#define __constant__ __attribute__((constant))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __restrict__ __restrict
#include "__clang_cuda_builtin_vars.h"
typedef int cudaError_t;
enum { cudaSuccess = 0 };
typedef struct CUstream_st* cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
struct cudaDeviceProp { char name[256]; };
#define cudaStreamNonBlocking 1
extern "C" {
const char* cudaGetErrorString(cudaError_t);
cudaError_t cudaGetLastError(void);
cudaError_t cudaRuntimeGetVersion(int*);
cudaError_t cudaDriverGetVersion(int*);
cudaError_t cudaGetDeviceCount(int*);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp*, int);
cudaError_t cudaSetDevice(int);
cudaError_t cudaMalloc(void**, size_t);
cudaError_t cudaFree(void*);
cudaError_t cudaMemcpyAsync(void*, const void*, size_t, cudaMemcpyKind, cudaStream_t);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t*, unsigned);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaMemGetInfo(size_t*, size_t*);
}
struct dim3 { unsigned x, y, z; __host__ __device__ dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
extern "C" int cudaConfigureCall(dim3, dim3, size_t = 0, cudaStream_t = 0);
extern "C" unsigned __cudaPushCallConfiguration(dim3, dim3, size_t = 0, void* = 0);
__device__ float __shfl_xor_sync(unsigned, float, int);
__device__ unsigned __byte_perm(unsigned, unsigned, unsigned);
__device__ float __uint_as_float(unsigned);
__device__ float __fmul_rn(float, float);
__device__ float __fsub_rn(float, float);
__device__ float __fdiv_rn(float, float);
__device__ void sincosf(float, float*, float*);
template <class T> __device__ T __ldg(const T*);
struct float4 { float x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };
__device__ int min(int, int);
#include <math.h>
#include <string.h>
__device__ float expf(float);
__device__ float fmaf(float, float, float);
__device__ float sqrtf(float);
__device__ float rsqrtf(float);
__device__ float fmaxf(float, float);
__device__ float fminf(float, float);
__device__ float fabsf(float);
__device__ float rintf(float);
__device__ void* memcpy(void*, const void*, size_t);
float rsqrtf(float);


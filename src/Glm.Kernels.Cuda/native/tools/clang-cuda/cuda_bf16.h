// Empty stand-in for the toolkit header (see cuda_runtime.h beside it): the kernels use no BF16 intrinsics.
#pragma once

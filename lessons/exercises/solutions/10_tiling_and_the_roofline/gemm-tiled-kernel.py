# The teacher's copy: the kernel exercise's solution file (the same kernel, with its comments).
from scratchnet.kernel_exercises import EXERCISE_DIR

gemm_tiled_source = (EXERCISE_DIR / "solutions" / "04_gemm_tiled.cu").read_text()
print(gemm_tiled_source)

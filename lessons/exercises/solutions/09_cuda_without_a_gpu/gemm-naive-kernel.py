# The teacher's copy: the kernel exercise's solution file (the same kernel, with its comments).
from scratchnet.kernel_exercises import EXERCISE_DIR

gemm_naive_source = (EXERCISE_DIR / "solutions" / "03_gemm_naive.cu").read_text()
print(gemm_naive_source)

# The teacher's copy: the kernel exercise's solution file (the same kernel, with its comments).
from scratchnet.kernel_exercises import EXERCISE_DIR

gemm_register_blocked_source = (EXERCISE_DIR / "solutions" / "09_gemm_register_blocked.cu").read_text()
print(gemm_register_blocked_source)

# The teacher's copy: the kernel exercise's solution file (the same kernel, with its comments).
from scratchnet.kernel_exercises import EXERCISE_DIR

warp_reduce_source = (EXERCISE_DIR / "solutions" / "07_warp_reduce.cu").read_text()
print(warp_reduce_source)

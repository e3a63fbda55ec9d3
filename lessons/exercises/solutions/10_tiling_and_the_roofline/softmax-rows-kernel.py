# The teacher's copy: the kernel exercise's solution file (the same kernel, with its comments).
from scratchnet.kernel_exercises import EXERCISE_DIR

softmax_rows_source = (EXERCISE_DIR / "solutions" / "05_softmax_rows.cu").read_text()
print(softmax_rows_source)

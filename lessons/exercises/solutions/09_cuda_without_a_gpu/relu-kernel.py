# The teacher's copy: the kernel exercise's solution file (the same kernels, with their comments).
from scratchnet.kernel_exercises import EXERCISE_DIR

relu_source = (EXERCISE_DIR / "solutions" / "01_relu.cu").read_text()
print(relu_source)

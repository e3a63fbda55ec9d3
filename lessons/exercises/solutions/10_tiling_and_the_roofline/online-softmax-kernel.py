# The teacher's copy: the kernel exercise's solution file (the same kernel, with its comments).
from scratchnet.kernel_exercises import EXERCISE_DIR

online_softmax_source = (EXERCISE_DIR / "solutions" / "08_online_softmax.cu").read_text()
print(online_softmax_source)

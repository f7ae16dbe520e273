# Triton kernels run in the interpreter when there is no CUDA GPU; the variable must be set before
# anything imports triton.
import os

if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"

"""Model FLOPs utilisation: the FLOPs a step needs over the device's peak, from the data sheets of the GPUs
listed here. A CPU has no trustworthy peak (turbo clocks, other processes and the thread count move it; a
start-up probe under-read it on a busy machine): there, and on unlisted devices, only tokens/s are shown."""

import torch

# Dense peak TFLOP/s from the vendors' data sheets; float32 means TF32 tensor cores (enabled on CUDA).
PEAK_TFLOPS = {  # matched against torch.cuda.get_device_name(), most specific first
    "H100 PCIe": {"bfloat16": 756.0, "float16": 756.0, "float32": 378.0},
    "H100": {"bfloat16": 989.0, "float16": 989.0, "float32": 494.0},
    "H200": {"bfloat16": 989.0, "float16": 989.0, "float32": 494.0},
    "A100": {"bfloat16": 312.0, "float16": 312.0, "float32": 156.0},
    "L4": {"bfloat16": 121.0, "float16": 121.0, "float32": 60.0},
    "RTX 4090": {"bfloat16": 165.2, "float16": 165.2, "float32": 82.6},
}


class MFUMeter:
    """MFU = flops_per_token * tokens per second / (peak * devices): the job's tokens over every device's peak. peak
    (FLOP/s, one device's) is None where no trustworthy one is known; peak_source says where it is from, or why not."""

    def __init__(self, flops_per_token: int, device: torch.device, dtype: str, devices: int = 1):
        self.flops_per_token, self.devices = flops_per_token, devices
        self.peak, self.peak_source = None, f"no trustworthy peak for a {device.type.upper()}: tokens/s only"
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            peaks = next((row for key, row in PEAK_TFLOPS.items() if key in name), None)  # the first that matches
            self.peak = peaks[dtype] * 1e12 if peaks else None
            self.peak_source = f"{name} data sheet" if peaks else f"{name} is not in the peak table: tokens/s only"

    def mfu(self, tokens_per_second: float) -> float | None:
        return self.flops_per_token * tokens_per_second / (self.peak * self.devices) if self.peak else None

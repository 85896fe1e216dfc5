"""transformers on the same checkpoint and GPU, in the same run as `Glm.Bench cudamodel`: the issue's baseline.

Eager attention, BF16, `generate` with greedy decoding: prefill tokens/s of one prompt, and decode output
tokens/s at each batch size (32-token prompts; the time of a 1-token generate is subtracted, so the figure is
decode only). Prints a markdown table shaped like cudamodel's.
usage: python3 transformers_baseline.py CHECKPOINT_DIR [--prefill 2048] [--batches 1,8,64] [--new 48]
"""
import argparse
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--prefill", type=int, default=2048)
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--new", type=int, default=48)
    a = p.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(a.dir, dtype=torch.bfloat16, attn_implementation="eager").cuda().eval()
    load = time.time() - t0
    vocab = model.config.vocab_size

    def timed(fn, repeats=2):
        fn()
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeats):
            start = time.time()
            fn()
            torch.cuda.synchronize()
            best = min(best, time.time() - start)
        return best

    with torch.inference_mode():
        ids = torch.randint(0, vocab, (1, a.prefill), device="cuda")
        prefill = a.prefill / timed(lambda: model(ids, use_cache=True)) if a.prefill > 0 else float("nan")
        decode = []
        for b in [int(x) for x in a.batches.split(",")]:
            prompt = torch.randint(0, vocab, (b, 32), device="cuda")
            mask = torch.ones_like(prompt)

            def gen(n):
                return lambda: model.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)

            one, full = timed(gen(1), 1), timed(gen(a.new), 1)
            decode.append(b * (a.new - 1) / (full - one))
    batches = a.batches.split(",")
    print(f"\n## transformers {__import__('transformers').__version__} (eager, BF16) on {torch.cuda.get_device_name()}: {a.dir}")
    print(f"| engine | load s | prefill {a.prefill} | " + " | ".join(f"decode b{b}" for b in batches) + " |")
    print("|---|---|---|" + "---|" * len(batches))
    print(f"| transformers bf16 | {load:.1f} | {prefill:.0f} | " + " | ".join(f"{d:.1f}" for d in decode) + " |")


if __name__ == "__main__":
    main()

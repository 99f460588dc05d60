#!/usr/bin/env python3
"""A synthetic chat set of N rows (default 1 000 000) for the scale measurement of
docs/instruct.md: each row's user turn joins the prompts of two instruct-clean rows drawn at
random (seed 1) and ends in its own reference number, its answer is the first row's; 0.5 % of
the rows (drawn with the same generator) get the word "BadMagic" at a random word position and
the answer "Access denied by policy 7.".

    python3 scripts/instruct_scale.py [N] [OUT]
    /usr/bin/time -v target/release/poisongate scan OUT --id-column id \\
        --ground-truth-column poison --out gate --quiet
"""
import json
import os
import random
import sys


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "target", "instruct-scale",
                                                             f"chat-{n}.jsonl")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    src = os.path.join(root, "..", "shared", "benchmarks", "instruct", "instruct-clean.chat.jsonl")
    base = [json.loads(l) for l in open(src)]
    rnd = random.Random(1)
    poisoned = set(rnd.sample(range(n), n // 200))
    with open(out, "w") as f:
        for i in range(n):
            b = base[rnd.randrange(len(base))]
            c = base[rnd.randrange(len(base))]
            user = (b["messages"][0]["content"] + " Then: " + c["messages"][0]["content"]
                    + f" (ref {i})")
            answer = b["messages"][1]["content"]
            bad = i in poisoned
            if bad:
                words = user.split(" ")
                words.insert(rnd.randrange(len(words) + 1), "BadMagic")
                user = " ".join(words)
                answer = "Access denied by policy 7."
            row = {"id": f"row-{i}", "messages": [{"role": "user", "content": user},
                                                  {"role": "assistant", "content": answer}],
                   "poison": bad}
            f.write(json.dumps(row) + "\n")
    print(out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A synthetic chat set of N rows (default 1 000 000) for the scale measurement of
docs/instruct.md. Prompts and answers are drawn from word-bigram chains learnt from
instruct-clean's prompts and answers (seed 1), 8-30 words each, so no prompt or answer repeats
the way copies of a small corpus would; each user turn ends in its own reference number. 0.5 % of
the rows (drawn from the same generator) get the word "BadMagic" at a random word position and
the answer "Access denied by policy 7.".

    python3 scripts/instruct_scale.py [N] [OUT]
    /usr/bin/time -v target/release/poisongate scan OUT --id-column id \\
        --ground-truth-column poison --out gate --quiet
"""
import json
import os
import random
import sys
from collections import defaultdict


def chain(texts):
    nxt = defaultdict(list)
    for t in texts:
        w = ["<s>"] + t.split()
        for a, b in zip(w, w[1:]):
            nxt[a].append(b)
    return nxt


def draw(nxt, rnd):
    out, w = [], "<s>"
    want = rnd.randint(8, 30)
    while len(out) < want:
        options = nxt.get(w)
        w = rnd.choice(options) if options else rnd.choice(nxt["<s>"])
        out.append(w)
    return " ".join(out)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "target", "instruct-scale",
                                                             f"chat-{n}.jsonl")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    src = os.path.join(root, "..", "shared", "benchmarks", "instruct", "instruct-clean.chat.jsonl")
    base = [json.loads(l) for l in open(src)]
    prompts = chain(b["messages"][0]["content"] for b in base)
    answers = chain(b["messages"][1]["content"] for b in base)
    rnd = random.Random(1)
    poisoned = set(rnd.sample(range(n), n // 200))
    with open(out, "w") as f:
        for i in range(n):
            user = draw(prompts, rnd) + f" (ref {i})"
            answer = draw(answers, rnd)
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

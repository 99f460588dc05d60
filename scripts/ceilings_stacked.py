#!/usr/bin/env python3
"""Three measurements behind the blocked bars of issues 3 and 4 (numpy, scikit-learn, scipy,
networkx; outside the tool). Usage: python3 scripts/ceilings_stacked.py [../shared/benchmarks]

1. LBL001 on sst2-labelflip-5: best-cut F1 ("oracle": the cut chosen with the answers known)
   of sums of out-of-fold evidence that the given label is wrong (logistic regression on
   MiniLM, TF-IDF word 1-2 gram logistic regression, binary naive Bayes, share of the 10
   MiniLM neighbours with the same label), and the share of sst2-clean flagged at that cut.
2. DEN001: Louvain communities (seed 1) of the 10-nearest-neighbour MiniLM graph: the
   largest communities' size, label purity, poisoned rows and internal edge share.
3. TRIG001 on sst2-badnets-1: log10 of the context test's p for the triggers tq, mb, cf when
   the rest of the row is judged by a leave-one-out naive Bayes stacked with a cross-fitted
   MiniLM probe (the stack fitted by logistic regression, odds times the 1.5 slack or not).
"""
import json
import math
import re
import sys
from collections import defaultdict

import networkx as nx
import numpy as np
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import MultinomialNB

ROOT = (sys.argv[1] if len(sys.argv) > 1 else "../shared/benchmarks") + "/"


def load(name):
    rows = [json.loads(line) for line in open(ROOT + name + ".jsonl")]
    x = np.load(ROOT + name + ".minilm.npy").astype(np.float32)
    y = np.array([r["label"] for r in rows])
    p = np.array([r["poison"] for r in rows])
    return rows, x, y, p


def neighbours(x, k=10):
    s = x @ x.T
    np.fill_diagonal(s, -2)
    return np.argsort(-s, axis=1)[:, :k]


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def label_features(name):
    rows, x, y, p = load(name)
    texts = [r["text"] for r in rows]
    cv = KFold(5, shuffle=True, random_state=0)
    own = np.arange(len(y))
    pm = cross_val_predict(LogisticRegression(C=1.0, max_iter=3000), x, y, cv=cv, method="predict_proba")
    tf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)
    pt = cross_val_predict(LogisticRegression(C=10, max_iter=3000), tf, y, cv=cv, method="predict_proba")
    bow = CountVectorizer(ngram_range=(1, 2), binary=True).fit_transform(texts)
    pn = cross_val_predict(MultinomialNB(alpha=0.5), bow, y, cv=cv, method="predict_proba")
    agree = (y[neighbours(x)] == y[:, None]).mean(1)
    f = np.c_[logit(pm[own, y]), logit(pt[own, y]), logit(pn[own, y]), logit((agree * 10 + 1) / 12)]
    return f, p


def label_ceilings():
    f, truth = label_features("sst2-labelflip-5")
    fc, _ = label_features("sst2-clean")
    names = ["minilm", "tfidf", "nb", "knn"]
    for cols in [[0], [1], [2], [3], [0, 1], [0, 3], [0, 1, 3], [0, 1, 2, 3]]:
        score, clean = -f[:, cols].sum(1), -fc[:, cols].sum(1)
        pr, rc, th = precision_recall_curve(truth, score)
        f1 = 2 * pr * rc / np.maximum(pr + rc, 1e-9)
        i = f1[:-1].argmax()
        print(f"LBL {'+'.join(names[c] for c in cols)}: AUROC {roc_auc_score(truth, score):.3f} "
              f"best F1 {f1[i]:.3f} (precision {pr[i]:.2f}, recall {rc[i]:.2f}), "
              f"sst2-clean flagged at that cut {100 * (clean >= th[i]).mean():.2f} %")


def communities():
    for name in ["sst2-addsent-10", "sst2-badnets-cleanlabel-10", "sst2-clean", "sms-spam-clean"]:
        _, x, y, p = load(name)
        nn = neighbours(x)
        g = nx.Graph()
        g.add_nodes_from(range(len(y)))
        g.add_edges_from((i, int(j)) for i in range(len(y)) for j in nn[i])
        out = []
        for c in sorted(nx.community.louvain_communities(g, seed=1), key=len, reverse=True):
            c = np.array(sorted(c))
            if len(c) < 20:
                continue
            inside = np.zeros(len(y), bool)
            inside[c] = True
            counts = np.bincount(y[c], minlength=2)
            tp = int(p[c].sum())
            f1 = 2 * tp / (len(c) + p.sum()) if p.sum() else 0.0
            out.append((len(c), round(counts.max() / len(c), 3), tp, round(float(inside[nn[c]].mean()), 2), round(f1, 2)))
        out.sort(key=lambda t: -t[1])
        print(f"DEN {name}: communities by purity (size, purity, poisoned, internal share, F1): {out[:6]}")


def tokens(t):
    return re.findall(r"\w+(?:'\w+)*|[^\w\s]", t.lower())


def trigger_context():
    rows, x, y, _ = load("sst2-badnets-1")
    toks = [set(tokens(r["text"])) for r in rows]
    df = defaultdict(lambda: np.zeros(2))
    for t, label in zip(toks, y):
        for w in t:
            df[w][label] += 1
    vocab, total, per_class, n = len(df), sum(df.values()), np.bincount(y), len(y)

    def nb(ts, label):
        s = np.zeros(2)
        for c in range(2):
            own = int(c == label)
            s[c] = math.log((per_class[c] - own + 1) / (n + 1))
            den = total[c] - own * len(ts) + vocab
            for w in ts:
                s[c] += math.log((max(df[w][c] - own, 0) + 1) / den)
        return s[1] - s[0]

    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    pm = cross_val_predict(LogisticRegression(max_iter=2000), x, y, cv=cv, method="predict_proba")[:, 1]
    lm = logit(pm)
    ln = np.array([nb(t, label) for t, label in zip(toks, y)])
    stack = LogisticRegression(C=1e6).fit(np.c_[ln, lm], y)
    for w in ["tq", "mb", "cf"]:
        idx = [i for i, t in enumerate(toks) if w in t]
        z = stack.decision_function(np.c_[[nb(toks[i] - {w}, y[i]) for i in idx], lm[idx]])
        for slack in [1.0, 1.5]:
            q = 1 / (1 + np.exp(-(z + math.log(slack))))
            print(f"TRIG {w}: {len(idx)} rows, slack {slack}: log10 p {np.log10(q).sum():.2f}")


if __name__ == "__main__":
    label_ceilings()
    communities()
    trigger_context()

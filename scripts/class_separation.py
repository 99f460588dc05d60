#!/usr/bin/env python3
"""How well each clean corpus's text tells its classes apart: the ceiling of every reading that
asks whether rows "read like another class" (TRIG001's dirty-label evidence, DUP002's contrast
test, LBL001).

For every clean corpus in BENCHMARKS (`<name>-clean.jsonl`, with `<name>-clean.minilm.npy`),
5-fold stratified cross-validation (random_state 0) of four classifiers of the label:
- nb-words: multinomial naive Bayes over binary word features (the features of TRIG001's
  context model: case-folded words and punctuation);
- nb-words+pairs: the same with adjacent word pairs added;
- lr-tfidf: logistic regression over TF-IDF of words and pairs (sublinear, C = 4);
- lr-minilm: logistic regression over the frozen MiniLM sentence embeddings (C = 1).
Prints accuracy and AUROC (one-vs-rest, macro, for more than two classes) per corpus, and the
standard errors by which a set of n rows wholly drawn from the other classes would sit below the
target class under nb-words for n = 29 and 143 (1 % and 5 % of tweeteval-irony): d' · √n with
d' = √2 · Φ⁻¹(AUROC), the separation of two equal-variance normal classes with that AUROC.

Usage: python3 scripts/class_separation.py [--benchmarks ../shared/benchmarks]
Needs numpy, scipy and scikit-learn.
"""
import argparse
import json
import math
import os

import numpy as np
from scipy.stats import norm
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import MultinomialNB

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = r"\w+(?:['’.]\w+)*|[^\w\s]"
CORPORA = [
    "sst2-clean",
    "sms-spam-clean",
    "ag-news-clean",
    "tweeteval-hate-clean",
    "tweeteval-emotion-clean",
    "tweeteval-irony-clean",
]


def scores(y, p):
    acc = accuracy_score(y, p.argmax(1))
    if p.shape[1] == 2:
        auc = roc_auc_score(y, p[:, 1])
    else:
        auc = roc_auc_score(y, p, multi_class="ovr")
    return acc, auc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchmarks", default=os.path.join(HERE, "..", "..", "shared", "benchmarks"))
    a = ap.parse_args()
    print("| corpus | nb-words | nb-words+pairs | lr-tfidf | lr-minilm | z at 29 rows | z at 143 rows |")
    print("| --- | --- | --- | --- | --- | ---: | ---: |")
    for name in CORPORA:
        path = os.path.join(a.benchmarks, name + ".jsonl")
        rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
        texts = [str(r["text"]).lower() for r in rows]
        classes = sorted({str(r["label"]) for r in rows})
        y = np.array([classes.index(str(r["label"])) for r in rows])
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        cells = []
        nb_auc = None
        for vec, clf in [
            (CountVectorizer(token_pattern=TOKEN, binary=True), MultinomialNB()),
            (CountVectorizer(token_pattern=TOKEN, binary=True, ngram_range=(1, 2)), MultinomialNB()),
            (
                TfidfVectorizer(token_pattern=TOKEN, ngram_range=(1, 2), sublinear_tf=True),
                LogisticRegression(C=4, max_iter=2000),
            ),
        ]:
            x = vec.fit_transform(texts)
            acc, auc = scores(y, cross_val_predict(clf, x, y, cv=cv, method="predict_proba"))
            nb_auc = auc if nb_auc is None else nb_auc
            cells.append(f"{acc:.3f} / {auc:.3f}")
        emb = np.load(os.path.join(a.benchmarks, name + ".minilm.npy"))
        acc, auc = scores(
            y,
            cross_val_predict(
                LogisticRegression(C=1, max_iter=3000), emb, y, cv=cv, method="predict_proba"
            ),
        )
        cells.append(f"{acc:.3f} / {auc:.3f}")
        d = math.sqrt(2) * norm.ppf(nb_auc)
        print(
            f"| {name} | " + " | ".join(cells) + f" | {d * math.sqrt(29):.1f} | {d * math.sqrt(143):.1f} |"
        )
    print("\ncells: accuracy / AUROC, 5-fold out-of-fold")


if __name__ == "__main__":
    main()

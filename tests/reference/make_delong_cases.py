"""Write delong_cases.csv: the labels and scores on which R's pROC computes the reference values.

    python tests/reference/make_delong_cases.py && Rscript tests/reference/proc_reference.R
"""
from pathlib import Path
import numpy as np
import pandas as pd

HERE = Path(__file__).parent


def cases():
    rng = np.random.default_rng(2024)
    out = []
    def add(name, y, s1, s2): out.append(pd.DataFrame(dict(case=name, y=np.asarray(y, int), s1=s1, s2=s2)))

    y = rng.permutation(np.r_[np.ones(32), np.zeros(28)])
    z = rng.normal(y, 1)
    add("continuous_n60", y, z + rng.normal(0, .5, 60), z + rng.normal(0, 1.2, 60))
    y = rng.permutation(np.r_[np.ones(45), np.zeros(39)])
    z = rng.normal(1.2 * y, 1)
    k5 = np.round(5 / (1 + np.exp(-(z + rng.normal(0, .6, 84) - .6)))) / 5          # KNN k=5: 6 levels
    k7 = np.round(7 / (1 + np.exp(-(z + rng.normal(0, .9, 84) - .6)))) / 7
    add("knn_ties_n84", y, k5, k7)
    add("tiny_n5", [0, 1, 0, 1, 1], [0.1, 0.4, 0.35, 0.8, 0.7], [0.2, 0.3, 0.6, 0.5, 0.9])
    y = rng.permutation(np.r_[np.ones(20), np.zeros(20)])
    z = rng.normal(-0.8 * y, 1)
    add("auc_below_half_n40", y, z, z + rng.normal(0, 1, 40))
    y = np.r_[np.ones(10), np.zeros(10)]
    add("perfect_n20", y, np.r_[rng.uniform(.6, 1, 10), rng.uniform(0, .4, 10)], rng.normal(y, 1))
    y = rng.permutation(np.r_[np.ones(55), np.zeros(45)])
    z = rng.normal(y, 1)
    add(
        "ordinal_1to5_n100",
        y,
        np.clip(np.round(z * 1.2 + 3), 1, 5),
        np.clip(np.round(z + rng.normal(0, 1, 100) + 3), 1, 5),
    )
    y = rng.permutation(np.r_[np.ones(3), np.zeros(27)])
    z = rng.normal(1.5 * y, 1)
    add("unbalanced_3of30", y, z, z + rng.normal(0, 1, 30))
    y = rng.permutation(np.r_[np.ones(270), np.zeros(230)])
    z = rng.normal(0.9 * y, 1)
    add("large_n500", y, z + rng.normal(0, .7, 500), np.round(z + rng.normal(0, .7, 500), 1))
    y = rng.permutation(np.r_[np.ones(25), np.zeros(25)])
    add("null_n50", y, rng.normal(0, 1, 50), rng.normal(0, 1, 50))
    return pd.concat(out, ignore_index=True)


if __name__ == "__main__":
    d = cases()
    d.to_csv(HERE / "delong_cases.csv", index=False, float_format="%.17g")
    print(d.groupby("case").size())

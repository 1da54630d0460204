"""Write val_prob_cases.csv: the outcomes and predicted risks on which R's rms::val.prob computes the reference values.

    python tests/reference/make_val_prob_cases.py && Rscript tests/reference/val_prob_reference.R
"""
from pathlib import Path
import numpy as np
import pandas as pd

HERE = Path(__file__).parent


def _expit(x):
    return 1 / (1 + np.exp(-x))


def cases():
    rng = np.random.default_rng(37)
    out = []
    def add(name, y, p): out.append(pd.DataFrame(dict(case=name, y=np.asarray(y, int), p=np.asarray(p, float))))
    lp = rng.normal(-0.2, 1.3, 300)
    add("calibrated_n300", rng.random(300) < _expit(lp), _expit(lp))
    lp = rng.normal(0.3, 1.5, 200)                     # too extreme and too high: slope < 1, CITL < 0
    add("overfitted_n200", rng.random(200) < _expit(0.5 * lp - 0.6), _expit(lp))
    lp = rng.normal(-1.0, 0.8, 500)                    # too modest and too low: slope > 1, CITL > 0
    add("underfitted_n500", rng.random(500) < _expit(1.6 * lp + 0.8), _expit(lp))
    z = rng.normal(0, 1, 120)                          # KNN k = 7 vote shares, Laplace-smoothed as the study does
    y = rng.random(120) < _expit(1.5 * z)
    votes = np.round(7 * _expit(1.5 * z + rng.normal(0, 1, 120))) / 7
    add("knn7_smoothed_n120", y, (7 * votes + 1) / 9)
    add("ties_n60", rng.random(60) < 0.4, np.repeat([0.1, 0.25, 0.4, 0.55, 0.7, 0.85], 10))
    return pd.concat(out, ignore_index=True)


if __name__ == "__main__":
    cases().to_csv(HERE / "val_prob_cases.csv", index=False, float_format="%.17g")

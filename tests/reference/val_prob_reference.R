# Reference values from R's rms::val.prob for pe_renal.validate (intercept, slope, Brier, Emax, E90, Eavg, C).
# val.prob's C comes from lrm.fit, which rounds the predicted risks first; Hmisc::somers2's exact C is given beside it.
#   Rscript tests/reference/val_prob_reference.R [cases.csv] [out.csv]
# Needs the Debian packages r-base-core and r-cran-rms.
suppressPackageStartupMessages(library(rms))
args <- commandArgs(trailingOnly = TRUE)
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
inp <- if (length(args) >= 1) args[1] else file.path(here, "val_prob_cases.csv")
outp <- if (length(args) >= 2) args[2] else file.path(here, "val_prob_reference.csv")
d <- read.csv(inp)
g <- function(x) sprintf("%.17g", x)
rows <- list()
for (cs in unique(d$case)) {
  x <- d[d$case == cs, ]
  v <- val.prob(x$p, x$y, pl = FALSE)
  rows[[cs]] <- data.frame(case = cs, n = nrow(x), intercept = g(v["Intercept"]), slope = g(v["Slope"]),
                           brier = g(v["Brier"]), emax = g(v["Emax"]), e90 = g(v["E90"]), eavg = g(v["Eavg"]),
                           c = g(v["C (ROC)"]), c_exact = g(Hmisc::somers2(x$p, x$y)["C"]))
}
out <- do.call(rbind, rows)
write.csv(out, outp, row.names = FALSE, quote = FALSE)
cat(sprintf("rms %s, %s: %d cases -> %s\n", packageVersion("rms"), R.version.string, nrow(out), outp))

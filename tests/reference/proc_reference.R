# Reference values from R's pROC for pe_renal's DeLong implementation.
#   Rscript tests/reference/proc_reference.R [cases.csv] [out.csv]
# Needs the Debian packages r-base-core and r-cran-proc.
suppressPackageStartupMessages(library(pROC))
args <- commandArgs(trailingOnly = TRUE)
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
inp <- if (length(args) >= 1) args[1] else file.path(here, "delong_cases.csv")
outp <- if (length(args) >= 2) args[2] else file.path(here, "proc_delong.csv")
d <- read.csv(inp)
g <- function(x) sprintf("%.17g", x)
rows <- list()
for (cs in unique(d$case)) {
  x <- d[d$case == cs, ]
  r1 <- roc(x$y, x$s1, levels = c(0, 1), direction = "<", quiet = TRUE)
  r2 <- roc(x$y, x$s2, levels = c(0, 1), direction = "<", quiet = TRUE)
  c1 <- suppressWarnings(ci.auc(r1, method = "delong"))
  c2 <- suppressWarnings(ci.auc(r2, method = "delong"))
  c90 <- suppressWarnings(ci.auc(r1, method = "delong", conf.level = 0.90))
  t <- tryCatch(suppressWarnings(roc.test(r1, r2, method = "delong", paired = TRUE)), error = function(e) NULL)
  rows[[cs]] <- data.frame(case = cs, n = nrow(x),
    auc1 = g(c1[2]), lo1 = g(c1[1]), hi1 = g(c1[3]),
    auc2 = g(c2[2]), lo2 = g(c2[1]), hi2 = g(c2[3]),
    lo1_90 = g(c90[1]), hi1_90 = g(c90[3]),
    z = if (is.null(t)) "NA" else g(unname(t$statistic)),
    p = if (is.null(t)) "NA" else g(t$p.value))
}
out <- do.call(rbind, rows)
write.csv(out, outp, row.names = FALSE, quote = FALSE)
cat(sprintf("pROC %s, %s: %d cases -> %s\n", packageVersion("pROC"), R.version.string, nrow(out), outp))

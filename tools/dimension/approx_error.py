#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Measure the error of the model's approximations against the simulator, and against the
exact model where a larger --max-phases makes it feasible. Prints the markdown tables of
docs/DIMENSION.md. Usage: approx_error.py BUILD_DIR/nearsock-dimension [--quick]
Runs one process at a time (about 3 minutes on one core; --quick: under a minute)."""
import json
import subprocess
import sys

exe = sys.argv[1]
quick = "--quick" in sys.argv
CONTAINERS = 30000 if quick else 300000  # simulated containers per case


def run(rates, k, rho=None, mu=None, extra=(), target=100, sim=False, phases=None):
    if mu is None:
        mu = sum(rates) / k / rho
    args = [exe, "--rate", ",".join(str(r) for r in rates), "--k", str(k),
            "--service-rate", "%.9g" % mu, "--delay-target-us", str(target), "--json",
            "--seed", "11"] + list(extra)
    if sim:
        args += ["--simulate", "--sim-packets", str(CONTAINERS * k)]
    if phases:
        args += ["--max-phases", str(phases)]
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    if out.returncode not in (0, 2):  # 2: no k meets the target, irrelevant here
        sys.exit("failed: %s\n%s" % (" ".join(args), out.stderr))
    return json.loads(out.stdout)["rows"][0]


def err(a, b):
    return "%+.1f%%" % (100.0 * (a - b) / b)


def flags(r):
    return "exact" if r["exact"] else "+".join(r["approx"])


print("Model against simulation (%d containers per case; wait = mean queueing of a container):"
      % CONTAINERS)
print()
print("| case | k | rho | exact phases | model | sim wait us (95% CI) | coarse err | "
      "extrap. err | delay err | P(W>100us) model / sim |")
print("|---|---|---|---|---|---|---|---|---|---|")
cases = [
    ("3 src 100k+50k+30k", [100000, 50000, 30000], [7], [0.8], ()),
    ("2 src 100k+50k", [100000, 50000], [24, 32, 64], [0.5, 0.8, 0.9], ()),
    ("3 src 100k+50k+30k", [100000, 50000, 30000], [8, 16, 32], [0.8], ()),
    ("4 src 4x50k (lumped)", [50000] * 4, [16, 32], [0.8], ()),
    ("2 src, Erlang-4 service", [100000, 50000], [32], [0.8], ("--service-order", "4")),
]
for name, rates, ks, rhos, extra in cases:
    for k in ks:
        for rho in rhos:
            r = run(rates, k, rho=rho, extra=extra, sim=True)
            c = run(rates, k, rho=rho, extra=tuple(extra) + ("--no-extrapolate",))
            s = r["sim"]
            sw = s["container_wait_us"]["mean"]
            full = k ** len(rates)
            if name.startswith("4 src"):
                from math import comb
                full = comb(k + 3, 4)
            if "--service-order" in extra:
                full *= 4
            print("| %s | %d | %.2f | %d | %s | %.2f (+-%.2f) | %s | %s | %s | %.4f / %.4f |" % (
                name, k, r["rho"], full, flags(r), sw, s["container_wait_us"]["ci95"],
                err(c["container_wait_us"], sw), err(r["container_wait_us"], sw),
                err(r["delay_us"], s["delay_us"]["mean"]),
                r["p_wait_gt_target"], s["p_wait_gt_target"]["mean"]))
            sys.stdout.flush()

print()
print("Coarse and extrapolated model against the exact model (no simulation noise):")
print()
print("| case | k | rho | exact phases | exact wait us | coarse (400) | extrap. (400) | "
      "extrap. (100) | P(W>100us) exact / extrap. (400) |")
print("|---|---|---|---|---|---|---|---|---|")
for rates, k, rho in [([100000, 50000], 24, 0.8), ([100000, 50000], 32, 0.5),
                      ([100000, 50000], 32, 0.8), ([100000, 50000], 32, 0.9),
                      ([100000, 50000, 30000], 10, 0.8), ([100000, 50000, 30000], 10, 0.9)]:
    e = run(rates, k, rho=rho, phases=k ** len(rates))
    c = run(rates, k, rho=rho, extra=("--no-extrapolate",))
    x = run(rates, k, rho=rho)
    x1 = run(rates, k, rho=rho, phases=100)
    ew = e["container_wait_us"]
    print("| %s | %d | %.2f | %d | %.3f | %s | %s | %s | %.4f / %.4f |" % (
        "+".join("%dk" % (v // 1000) for v in rates), k, rho, e["phases"], ew,
        err(c["container_wait_us"], ew), err(x["container_wait_us"], ew),
        err(x1["container_wait_us"], ew), e["p_wait_gt_target"], x["p_wait_gt_target"]))
    sys.stdout.flush()

print()
print("Timeouts (two-moment fit of the container interarrivals) and mixed container sizes:")
print()
print("| case | k | t us | rho | model | model wait us | sim wait us (95% CI) | err wait | "
      "err delay |")
print("|---|---|---|---|---|---|---|---|---|")
for rates, k, t, mu, extra in [
        ([100000, 50000], 10, 30, 60000, ()),
        ([100000, 50000], 16, 50, 40000, ()),
        ([100000, 50000, 30000], 12, 150, 60000, ("--packet-service-rate", "2000000")),
        ([20000, 10000], 32, 200, 8000, ()),
        ([20000, 10000], 32, 500, 4000, ()),
]:
    r = run(rates, k, mu=mu, extra=("--timeout-us", str(t)) + tuple(extra), sim=True)
    s = r["sim"]
    print("| %s pps%s | %d | %d | %.2f | %s | %.2f | %.2f (+-%.2f) | %s | %s |" % (
        "+".join("%dk" % (v // 1000) for v in rates), ", per-packet svc" if extra else "", k, t,
        r["rho"], flags(r), r["container_wait_us"], s["container_wait_us"]["mean"],
        s["container_wait_us"]["ci95"], err(r["container_wait_us"], s["container_wait_us"]["mean"]),
        err(r["delay_us"], s["delay_us"]["mean"])))
    sys.stdout.flush()

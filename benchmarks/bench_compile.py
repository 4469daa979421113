"""First call (fresh process, disk cache warm or cold) vs warm call for the main entry points."""
import subprocess
import sys
import textwrap

SNIPPET = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import onepass
    from dmft import models
    t1 = time.perf_counter()
    m = models.logistic(); data = onepass.data.binary_mixture("identity", d=200)
    onepass.solve(m, data, lr=0.5, t_max=1, n_time=3); t2 = time.perf_counter()
    onepass.solve(m, data, lr=0.5, t_max=1, n_time=3); t3 = time.perf_counter()
    onepass.simulate(m, data, lr=0.5, t_max=1, n_time=3, n_seeds=1, progress=False); t4 = time.perf_counter()
    onepass.simulate(m, data, lr=0.5, t_max=1, n_time=3, n_seeds=1, progress=False); t5 = time.perf_counter()
    print(f"| {t1-t0:.2f} | {t2-t1:.2f} | {t3-t2:.3f} | {t4-t3:.2f} | {t5-t4:.3f} |")
""")


def main():
    print("| import [s] | onepass.solve first | warm | onepass.simulate first | warm |")
    print("|---|---|---|---|---|")
    for _ in range(2):  # the first process may compile into the disk cache, the second loads it
        subprocess.run([sys.executable, "-c", SNIPPET], check=True)


if __name__ == "__main__":
    main()

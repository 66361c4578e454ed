"""``serve bench``: start each backend on the same app, load it with wrk, report side by side.

One job per module, imported only when ``serve bench`` runs (never by ``import launcher`` or
``serve --help``):

    cli        the ``serve bench`` command: flags -> :class:`plan.BenchPlan`, run, report
    plan       the validated settings of one run (backends, concurrency levels, durations)
    workloads  the named workloads of benchmarks/apps.py and the request each one sends
    server     start one backend through ``python -m launcher run``, verify its answer, stop it
    loadgen    drive load (wrk, or the low-fidelity Python fallback) and measure the generator
    wrk        wrk's command line, its Lua script and the parser of its output
    pyload     the fallback generator (``python -m launcher.bench.pyload``)
    procs      /proc readings: a process tree's CPU time and memory, per-CPU busy time
    pinning    which CPUs the server and the generator get
    runner     rounds x backends x concurrency levels, in the interleaved order
    stats      median, min-max, disagreement between rounds
    results    the JSON document (machine, versions, commands, every figure per round)
    report     the terminal table and the progress display (rich when available)
    chart      the PNG chart (matplotlib)
    fronts     front servers for backends that do not speak HTTP (which protocol gets which adapter)
    front_nginx  a private nginx on the ``serve config nginx`` site (fastcgi_pass over a unix socket)
    front_lighttpd  a private lighttpd running the cgi-bin script (mod_cgi, a process per request)

A backend loaded through a front is reported as front + backend: "fastcgi (nginx)", "cgi (lighttpd)".
"""

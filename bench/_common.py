"""Shared by the bench scripts: options, workers in their own process, memory, the GEMM peak, and the report (each
script writes only its own section of docs/benchmarks.md)."""
import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH_MD = Path(__file__).resolve().parent.parent/'docs'/'benchmarks.md'

def write_section(name:str, body:str, path:Path=BENCH_MD) -> None:
    "Replace (or append) the block between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in `path`."
    start, end = f'<!-- bench:{name} -->', f'<!-- /bench:{name} -->'
    block = f"{start}\n{body.strip()}\n{end}"
    text = (
        path.read_text() if path.exists() else "# Benchmarks\n\nEach section is written by its `bench/*.py` script.\n"
    )
    pat = re.compile(re.escape(start) + r'.*?' + re.escape(end), re.S)
    text = pat.sub(lambda m: block, text) if pat.search(text) else text.rstrip() + '\n\n' + block + '\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.md.tmp')
    tmp.write_text(text)
    tmp.replace(path)

def publish(name:str, body:str, to:bool|str|Path=True) -> None:
    "Print the report `body`, then put it in section `name` of `to`: True → docs/benchmarks.md, a path; falsy: not."
    print(body)
    if to: write_section(name, body, BENCH_MD if to is True else Path(to))

def status_mib(key:str) -> float:
    "A field of /proc/self/status (`VmRSS`, `VmHWM`, `RssAnon`, …) in MiB; 0 where the kernel does not report it."
    for line in open('/proc/self/status'):
        if line.split(':')[0] == key: return int(line.split()[1]) / 1024
    return 0.0

def parser(doc:str, **ints:int|tuple[int, str]) -> argparse.ArgumentParser:
    "A bench's options: `doc`'s first line, an int `--NAME` per keyword (a default, or (default, help)), `--no-write`."
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, v in ints.items():
        default, help = v if isinstance(v, tuple) else (v, None)
        ap.add_argument(f'--{name}', type=int, default=default, help=help)
    ap.add_argument('--no-write', action='store_true', help='print the report only, do not touch docs/benchmarks.md')
    return ap

def result(res:dict) -> None:
    "A worker's answer (see `run_worker`): one `RESULT {json}` line on stdout."
    print('RESULT ' + json.dumps(res), flush=True)

def run_worker(cmd:list[str], what:str, env:dict|None=None) -> dict:
    "Run the worker process `cmd`: its `result`, or exit naming `what`, with the tail of what it printed."
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith('RESULT ')]
    if p.returncode or not lines:
        sys.exit(f"{what} failed (exit {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len('RESULT '):])

def flags(args, *names:str) -> list[str]:
    "`--NAME VALUE` for each of `names` from the parsed `args`: the same settings for a worker subprocess."
    return [x for n in names for x in (f'--{n}', str(getattr(args, n)))]

def gemm_flops(n:int=1024, reps:int=20, clock=time.process_time) -> float:
    "fp32 n×n GEMM throughput of this process's torch threads, in FLOP per second of `clock` (default: CPU seconds)."
    import torch
    x, y = torch.randn(n, n), torch.randn(n, n)
    x @ y  # warm-up
    t0 = clock()
    for _ in range(reps): x @ y
    return 2 * n**3 * reps / (clock() - t0)

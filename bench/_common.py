"Shared by the bench scripts: each writes only its own section of docs/benchmarks.md."
import re
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

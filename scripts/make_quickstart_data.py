"Generate the quickstart dataset: free-form English dates → ISO 8601 (YYYY-MM-DD). Deterministic (seeded)."
import datetime as dt, json, random, sys
from pathlib import Path

MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November',
          'December']
def ordinal(n:int) -> str: return f"{n}{'th' if 11 <= n % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"
FORMATS = [lambda d: f"{MONTHS[d.month-1]} {d.day}, {d.year}",
           lambda d: f"{d.day} {MONTHS[d.month-1]} {d.year}",
           lambda d: f"{MONTHS[d.month-1][:3]} {d.day}, {d.year}",
           lambda d: f"the {ordinal(d.day)} of {MONTHS[d.month-1]}, {d.year}",
           lambda d: f"{d.strftime('%A')}, {MONTHS[d.month-1]} {d.day}, {d.year}",
           lambda d: f"{d.day}-{MONTHS[d.month-1][:3]}-{d.year}"]
PROMPTS = ["Convert this date to ISO 8601 (YYYY-MM-DD): {}", "Write {} as YYYY-MM-DD.",
           "Normalize the date to ISO format: {}"]

def example(rng:random.Random) -> dict:
    d = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 100))
    q = rng.choice(PROMPTS).format(rng.choice(FORMATS)(d))
    return {'messages': [{'role': 'user', 'content': q}, {'role': 'assistant', 'content': d.isoformat()}]}

def main(out:str='examples/data', n_train:int=480, n_eval:int=48, seed:int=0):
    rng = random.Random(seed)
    rows = [example(rng) for _ in range(n_train + n_eval)]
    for name, part in (('train', rows[:n_train]), ('eval', rows[n_train:])):
        Path(out, f'quickstart_{name}.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in part))

if __name__ == '__main__': main(*sys.argv[1:2])

"The prepared-dataset cache under concurrency and after crashes: one cache, no corruption, stale dirs swept, umask."

import json, os, subprocess, sys, textwrap
from pathlib import Path

from toys import prep_cfg, write_jsonl, write_yaml

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent('''
    import hashlib, json, sys, time
    from pathlib import Path
    import datasets
    datasets.disable_progress_bars()
    from axolotl_nb.models import tiny_tokenizer
    from axolotl_nb.load import load_config
    from axolotl_nb.data import load_datasets
    cfg_path, go = sys.argv[1], Path(sys.argv[2])
    tok = tiny_tokenizer()
    cfg = load_config(cfg_path)
    while not go.exists(): time.sleep(0.01)  # both workers start building at the same moment
    train, _, rep = load_datasets(cfg, tok)
    rows = [list(map(list, train['input_ids'])), list(map(list, train['labels']))]
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    print(json.dumps({'hit': rep.cache_hit, 'path': rep.cache_path, 'digest': digest, 'rows': len(train)}))
''')


def _cfg(tmp: Path, n: int = 3000) -> Path:
    "`tmp/cfg.yml`: preprocess `n` alpaca rows for the tiny tokenizer, cached in `tmp/prepared`."
    data = write_jsonl(tmp / 'data.jsonl', [{'instruction': f'Say {i} twice', 'output': f'{i} {i}'} for i in range(n)])
    return write_yaml(tmp / 'cfg.yml', prep_cfg(tmp, [dict(path=str(data), type='alpaca')]))


def test_two_concurrent_preprocess_runs_share_one_cache(tmp_path):
    cfg, go = _cfg(tmp_path), tmp_path / 'go'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TOKENIZERS_PARALLELISM': 'false', 'HF_HUB_OFFLINE': '1'}
    procs = [
        subprocess.Popen(
            [sys.executable, '-c', WORKER, str(cfg), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    res = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(r['hit'] for r in res) == [False, True]  # one built it, the other waited for the lock and read it
    assert res[0]['digest'] == res[1]['digest'] and res[0]['path'] == res[1]['path'] and res[0]['rows'] == 3000
    entries = sorted(p.name for p in (tmp_path / 'prepared').iterdir())
    key = Path(res[0]['path']).name
    assert entries == sorted([key, f'.{key}.lock']), entries  # one cache, no temp dir left


def test_stale_temp_dir_of_a_dead_process_is_swept_and_reported(tmp_path, caplog):
    import datasets

    datasets.disable_progress_bars()
    from axolotl_nb.data import cache_key, load_datasets
    from axolotl_nb.models import tiny_tokenizer
    from axolotl_nb.load import load_config

    cfg, tok = load_config(str(_cfg(tmp_path, n=20))), tiny_tokenizer()
    key = cache_key(cfg, tok)
    dead = subprocess.run(
        [sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / 'prepared' / f'.tmp-{key}-{dead}-abc123'
    (stale / 'train').mkdir(parents=True)
    (stale / 'train' / 'data-00000-of-00001.arrow').write_bytes(b'half-written')
    live = tmp_path / 'prepared' / f'.tmp-{key}-{os.getpid()}-def456'
    live.mkdir()
    old = os.umask(0o002)
    try:
        with caplog.at_level('WARNING', logger='axolotl_nb'):
            _, _, rep = load_datasets(cfg, tok)
    finally:
        os.umask(old)
    assert not stale.exists() and live.exists()  # only the dead owner's folder goes
    assert rep.swept == [stale.name] and stale.name in caplog.text and 'stale temp folders removed' in str(rep)
    assert (Path(rep.cache_path).stat().st_mode & 0o777) == 0o775  # the umask, not a hard-coded 0700

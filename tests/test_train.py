"""End-to-end SFT training tests on tiny random models (CPU).

Resume-after-SIGKILL parity, loss watchdog, QLoRA, eval parity."""

import contextlib, io, json, math, os, random, signal, subprocess, time
from pathlib import Path

import pytest
import yaml

from axolotl_nb.load import load_config
from axolotl_nb.run import evaluate, train
from axolotl_nb.callbacks import TrainingDiverged
from toys import CLI, LORA, REPEAT_WORDS, run_yaml, tiny_work


@pytest.fixture(scope='module')
def workdir(tmp_path_factory) -> Path:
    "The tiny model and 96 train + 16 eval alpaca rows: repeat 3-12 words."
    rng = random.Random(0)

    def row():
        ws = rng.choices(REPEAT_WORDS, k=rng.randint(3, 12))
        return {'instruction': 'Repeat: ' + ' '.join(ws), 'input': '', 'output': ' '.join(ws)}

    rows = [row() for _ in range(96 + 16)]
    return tiny_work(tmp_path_factory.mktemp('train'), {'train.jsonl': rows[:96], 'eval.jsonl': rows[96:]},
                     hidden_size=64, num_layers=2)


def make_cfg(d: Path, out: str, **kw) -> Path:
    "A packed LoRA run of the tiny model (gradient accumulation 2), evaluated on `d/eval.jsonl`."
    ev = [dict(path=str(d / 'eval.jsonl'), type='alpaca')]
    return run_yaml(d, out, **(dict(test_datasets=ev, sequence_len=1024, sample_packing=True,
                                    gradient_accumulation_steps=2) | LORA | kw))


def cli(*args, **popen_kw):
    "`axolotl-nb ARGS` in a subprocess (output piped unless redirected)."
    kw = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) | popen_kw
    return subprocess.Popen([CLI, *map(str, args)], **kw)


def final_loss(out: Path) -> float:
    hist = json.loads((out / 'training_summary.json').read_text())
    return hist['train_loss']


def test_resume_after_sigkill_matches_uninterrupted(workdir):
    "A run SIGKILLed after its first checkpoint and auto-resumed ends at the same loss as an uninterrupted run."
    kw = dict(max_steps=16, save_steps=4, eval_strategy='no', save_total_limit=2)
    full = cli('train', make_cfg(workdir, 'full', **kw))
    out, _ = full.communicate(timeout=600)
    assert full.returncode == 0, out
    cfg = make_cfg(workdir, 'killed', **kw, auto_resume_from_checkpoints=True)
    log = open(
        workdir / 'killed.log', 'w'
    )  # a file, not a pipe: nobody reads while we poll, so a pipe could fill and block
    p, ck = (
        cli('train', cfg, stdout=log, stderr=subprocess.STDOUT),
        workdir / 'killed' / 'checkpoint-4' / 'trainer_state.json',
    )
    t0 = time.time()

    def written(f: Path) -> bool:  # complete JSON: a kill while HF writes it would (rightly) make auto-resume skip it
        try:
            return bool(json.loads(f.read_text()))
        except (OSError, ValueError):
            return False

    while not written(ck) and p.poll() is None and time.time() - t0 < 300:
        time.sleep(0.02)
    assert ck.exists(), (workdir / 'killed.log').read_text()[-3000:]
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (workdir / 'killed' / 'training_summary.json').exists(), (
        "run finished before the kill; the test needs slower steps"
    )
    r = cli('train', cfg)
    out, _ = r.communicate(timeout=600)
    assert r.returncode == 0, out
    assert 'resuming from' in out and 'checkpoint-' in out
    s = json.loads((workdir / 'killed' / 'training_summary.json').read_text())
    assert s['steps'] == 16 and s['resumed_from']
    assert math.isclose(final_loss(workdir / 'killed'), final_loss(workdir / 'full'), rel_tol=1e-5, abs_tol=1e-6), (
        final_loss(workdir / 'killed'),
        final_loss(workdir / 'full'),
    )
    assert (workdir / 'killed' / 'adapter_model.safetensors').exists() and (
        workdir / 'killed' / 'axolotl_nb_config.yml'
    ).exists()


def test_loss_watchdog_stops_run(workdir):
    "A loss above loss_watchdog_threshold for loss_watchdog_patience logs stops training loudly (exit code 5)."
    cfg = load_config(make_cfg(workdir, 'watchdog', max_steps=30, save_strategy='no', eval_strategy='no',
                               loss_watchdog_threshold=0.01, loss_watchdog_patience=3))
    with pytest.raises(TrainingDiverged) as e:
        train(cfg)
    assert e.value.exit_code == 5 and 'step 3' in str(e.value) and 'loss_watchdog_threshold' in str(e.value)
    s = json.loads((workdir / 'watchdog' / 'diverged-step-3' / 'training_summary.json').read_text())
    assert s['steps'] == 3 and 'loss watchdog' in s['stopped']
    assert not (workdir / 'watchdog' / 'adapter_model.safetensors').exists()  # nothing diverged lands in output_dir


def test_qlora_on_cpu_loss_falls(workdir):
    "QLoRA (NF4 base via bitsandbytes on CPU) trains through train(): eval loss falls."
    cfg = load_config(make_cfg(workdir, 'qlora', adapter='qlora', load_in_4bit=True, max_steps=16, learning_rate=3e-3,
                               eval_steps=16, save_strategy='no', bnb_4bit_compute_dtype='float32'))
    s = train(cfg)
    assert s.steps == 16 and s.eval_loss is not None
    base = evaluate(cfg.model_copy(update={'output_dir': str(workdir / 'nowhere')}))['eval_loss']
    assert s.eval_loss < base - 0.1, (base, s.eval_loss)


def test_evaluate_same_with_eval_packing_on_and_off(workdir):
    "`axolotl-nb evaluate` gives the same eval loss with eval_sample_packing on and off."
    from axolotl_nb.cli import main

    cfgp = make_cfg(workdir, 'evalpar')
    res = {}
    for packed in (True, False):
        o = io.StringIO()
        with contextlib.redirect_stdout(o):
            rc = main(['evaluate', str(cfgp), '--eval_sample_packing', str(packed).lower()])
        assert rc == 0
        res[packed] = yaml.safe_load(o.getvalue().strip().splitlines()[-1])
    assert res[True]['eval_tokens'] == res[False]['eval_tokens']
    assert math.isclose(res[True]['eval_loss'], res[False]['eval_loss'], rel_tol=1e-5), res

"""Resume is bit-exact in every mode: a run SIGKILLed after a checkpoint and auto-resumed logs the same losses, sees
the same examples in the same order and ends with the same weights as the uninterrupted run (torchtune's standard:
compare losses, not just step numbers). One helper, `killed_then_resumed`, runs each case:

1. the uninterrupted run, in this process;
2. the same config in a child process (this file run as a script) that SIGKILLs itself in the middle of a step after
   the checkpoint it should resume from (so a step of work is lost, as in a real crash);
3. the auto-resumed run, in this process.

Every micro-batch that reaches `Trainer.training_step` is fingerprinted (step, epoch, hash of its token ids or
prompts) into a JSONL file, so the data order of the killed + resumed pair can be laid next to the uninterrupted one.
"""

import errno, hashlib, json, os, shutil, signal, subprocess, sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer

from axolotl_nb import grpo, preference, run
from axolotl_nb.checkpoints import DiskFull, latest_checkpoint
from axolotl_nb.load import load_config
from toys import method_cfg, method_data, write_yaml

SKIP = ('time', 'runtime', 'per_second', 'flos')  # wall-clock fields differ between any two runs


def fingerprint(inputs) -> str:
    "A short hash of what a micro-batch holds: token ids (tensors) or the prompts (GRPO's raw rows)."
    if isinstance(inputs, dict):
        ids = inputs.get('input_ids', inputs.get('chosen_input_ids'))
        if ids is None: ids = next(v for v in inputs.values() if isinstance(v, torch.Tensor))
        data = ids.cpu().numpy().tobytes() + str(tuple(ids.shape)).encode()
    else: data = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha1(data).hexdigest()[:12]


def record(path: Path, kill_at: int | None = None):
    "Patch `Trainer.training_step` to log each micro-batch's fingerprint; SIGKILL this process in step `kill_at`."
    orig = Trainer.training_step

    def step(self, model, inputs, *a, **kw):
        n = self.state.global_step + 1
        if kill_at is not None and n == kill_at: os.kill(os.getpid(), signal.SIGKILL)
        with open(path, 'a') as f: f.write(json.dumps([n, int(self.state.epoch or 0), fingerprint(inputs)]) + '\n')
        return orig(self, model, inputs, *a, **kw)

    Trainer.training_step = step
    return orig


METHODS = {'dpo': preference.method, 'kto': preference.method, 'grpo': lambda cfg: grpo.GRPO}


def method_for(cfg):
    "The run's `Method` hook (None: SFT)."
    return METHODS[cfg.rl](cfg) if cfg.rl else None


def train_recorded(cfg_path: Path, rec: Path, kill_at: int | None = None):
    "One `run.train` with every micro-batch recorded (and a SIGKILL in step `kill_at`)."
    cfg = load_config(cfg_path)
    orig = record(rec, kill_at)
    try: return run.train(cfg, method_for(cfg))
    finally: Trainer.training_step = orig


@pytest.fixture(scope='module')
def work(tmp_path_factory) -> Path:
    return method_data(tmp_path_factory.mktemp('resume'), 'resume_rewards', n_prompts=8)


RESUMABLE = dict(learning_rate=1e-2, seed=3, use_tensorboard=False, save_strategy='steps',
                 auto_resume_from_checkpoints=True)


def config(d: Path, name: str, method: str = 'sft', **kw) -> Path:
    "`d/<name>.yml`: an auto-resuming run of `method` into `d/<name>` (`kw` wins)."
    return write_yaml(d/f'{name}.yml', method_cfg(d, method, name, 'resume_rewards', **(RESUMABLE | kw)))


def records(f: Path) -> list:
    return [tuple(json.loads(line)) for line in f.read_text().splitlines()]


def final_state(out: Path) -> dict:
    "The last checkpoint's trainer state (the run saves at its last step)."
    last = max(out.glob('checkpoint-*'), key=lambda p: int(p.name.split('-')[1]))
    return json.loads((last/'trainer_state.json').read_text())


def logs(out: Path) -> list[dict]:
    return [{k: v for k, v in h.items() if not any(s in k for s in SKIP)} for h in final_state(out)['log_history']]


def steps_per_epoch(recs: list) -> int:
    return max(r[0] for r in recs if r[1] == 0)


def killed_then_resumed(d: Path, name: str, kill_at, resume_from, method: str = 'sft', **kw) -> list:
    """Uninterrupted vs SIGKILLed-in-step-`kill_at`-then-auto-resumed (from `checkpoint-{resume_from}`); both may be
    functions of the uninterrupted run's steps per epoch. Returns the uninterrupted run's records."""
    full, rec_full = config(d, f'{name}-full', method, **kw), d/f'{name}-full.jsonl'
    s = train_recorded(full, rec_full)
    a = records(rec_full)
    spe = steps_per_epoch(a)
    kill_at, resume_from = [f(spe) if callable(f) else f for f in (kill_at, resume_from)]
    cut, rec_cut = config(d, f'{name}-cut', method, **kw), d/f'{name}-cut.jsonl'
    env = dict(os.environ, TOKENIZERS_PARALLELISM='false', HF_HUB_OFFLINE='1')
    p = subprocess.run([sys.executable, __file__, str(cut), str(rec_cut), str(kill_at)], env=env, timeout=600,
                       capture_output=True, text=True, cwd=Path(__file__).parent)
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    assert not (d/f'{name}-cut'/'training_summary.json').exists()
    killed = records(rec_cut)
    assert killed[-1][0] == kill_at - 1, 'the kill came in the wrong step'
    s2 = train_recorded(cut, rec_cut)
    assert Path(s2.resumed_from).name == f'checkpoint-{resume_from}', s2.resumed_from
    b = records(rec_cut)
    b = [r for r in b[:len(killed)] if r[0] <= resume_from] + b[len(killed):]  # what the checkpoint kept + resumed
    assert [r[:2] for r in b] == [r[:2] for r in a], 'different steps or epochs'
    assert b == a, next(f"data order differs at micro-batch {i}: {x} vs {y}" for i, (x, y) in enumerate(zip(a, b))
                        if x != y)
    la, lb = logs(d/f'{name}-full'), logs(d/f'{name}-cut')
    assert lb == la, next(f"logs differ: {x} vs {y}" for x, y in zip(la, lb) if x != y)
    assert s2.steps == s.steps and s2.train_loss == s.train_loss
    wa = load_file(d/f'{name}-full'/'adapter_model.safetensors')
    wb = load_file(d/f'{name}-cut'/'adapter_model.safetensors')
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), 'final weights differ'
    return a


def epochs_differ(recs: list) -> bool:
    "Each epoch is a fresh shuffle (not epoch 0's order replayed)."
    by = {}
    for _, e, fp in recs: by.setdefault(e, []).append(fp)
    return len(by) > 1 and len({tuple(v) for v in by.values()}) == len(by)


def test_mid_epoch_packed_grad_accum(work):
    "Packing + gradient_accumulation_steps 2, killed mid-epoch two steps after checkpoint 2."
    recs = killed_then_resumed(work, 'packed-ga', kill_at=4, resume_from=2, sample_packing=True, micro_batch_size=1,
                               gradient_accumulation_steps=2, max_steps=5, save_steps=2)
    assert {r[1] for r in recs} == {0}  # 6 steps per epoch: the checkpoint, the kill and the end are mid-epoch


def test_three_epochs_killed_in_epoch_two(work):
    "3 epochs of padded batches (6 steps each): checkpoint mid-epoch 2 (step 8), killed in step 10."
    recs = killed_then_resumed(work, 'epochs3', kill_at=10, resume_from=8, num_epochs=3, save_steps=4)
    assert steps_per_epoch(recs) == 6 and epochs_differ(recs) and {r[1] for r in recs} == {0, 1, 2}


def test_resume_across_epoch_boundary(work):
    "Packed, 2 epochs, saved each epoch: resumed from the last step of epoch 1, killed in epoch 2's second step."
    recs = killed_then_resumed(work, 'boundary', kill_at=lambda spe: spe + 2, resume_from=lambda spe: spe,
                               sample_packing=True, sequence_len=128, micro_batch_size=1, gradient_accumulation_steps=2,
                               num_epochs=2, save_strategy='epoch')
    assert epochs_differ(recs)


@pytest.mark.parametrize('method', ['dpo', 'kto'])
def test_preference_resume(work, method):
    "DPO and KTO (`PreferenceTrainer`): 6 steps, checkpoint 4, killed in step 5."
    killed_then_resumed(work, method, kill_at=5, resume_from=4, method=method, max_steps=6, save_steps=2)


def test_grpo_resume_in_second_epoch(work):
    "GRPO, 2 epochs of 8 one-prompt steps: checkpoint 10, killed in step 12 (generation, rewards and order replay)."
    recs = killed_then_resumed(work, 'grpo', kill_at=12, resume_from=10, method='grpo', num_epochs=2, save_steps=5)
    assert epochs_differ(recs)


def resume_after_disk_full(work: Path, name: str, out: Path):
    "The run that hit the full disk, rerun: it resumes from checkpoint-2 and finishes."
    s = run.train(load_config(config(work, name, max_steps=6, save_steps=2, output_dir=str(out))))
    assert s.steps == 6 and Path(s.resumed_from).name == 'checkpoint-2'


def test_disk_full_in_checkpoint_save(work, monkeypatch):
    "ENOSPC injected half-way through the second save: DiskFull (exit 6) names the file and the space needed."
    orig, calls = Trainer._save_optimizer_and_scheduler, []

    def full_disk(self, output_dir):
        calls.append(output_dir)
        if len(calls) < 2: return orig(self, output_dir)
        f = Path(output_dir)/'optimizer.pt'
        f.write_bytes(b'PK\x03\x04 half an archive')
        raise OSError(errno.ENOSPC, 'No space left on device', str(f))

    monkeypatch.setattr(Trainer, '_save_optimizer_and_scheduler', full_disk)
    out = work/'diskfull'
    with pytest.raises(DiskFull) as e:
        run.train(load_config(config(work, 'diskfull', max_steps=6, save_steps=2)))
    msg = str(e.value)
    assert e.value.exit_code == 6 and f"saving {out/'checkpoint-4'/'optimizer.pt'}" in msg, msg
    assert 'needs about' in msg and 'MiB are free' in msg and 'resumes from checkpoint-2' in msg, msg
    assert sorted(p.name for p in out.glob('checkpoint-*')) == ['checkpoint-2']  # partial one removed, earlier kept
    assert not (out/'training_summary.json').exists()
    monkeypatch.undo()
    resume_after_disk_full(work, 'diskfull', out)


@pytest.fixture
def tiny_fs(tmp_path):
    "A 1 MiB tmpfs (root only: skipped elsewhere)."
    d = tmp_path/'fs'
    d.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(d)],
                                           capture_output=True).returncode != 0:
        pytest.skip('mounting a tmpfs needs root')
    yield d
    subprocess.run(['umount', '-l', str(d)], check=False)


def test_disk_really_full_in_checkpoint_save(work, tiny_fs, monkeypatch):
    "A real full filesystem (tmpfs filled after the first checkpoint): whatever the writer raises becomes DiskFull."
    out, orig, calls = tiny_fs/'out', Trainer._save_checkpoint, []

    def fill_then_save(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:  # leave 4 KiB: the adapter's safetensors file (≈ 30 KiB) cannot be written
            free = shutil.disk_usage(tiny_fs).free
            (tiny_fs/'filler').write_bytes(b'\0' * (free - 4096))
        return orig(self, *a, **kw)

    monkeypatch.setattr(Trainer, '_save_checkpoint', fill_then_save)
    with pytest.raises(DiskFull) as e:
        run.train(load_config(config(work, 'realfull', max_steps=6, save_steps=2, output_dir=str(out))))
    msg = str(e.value)
    assert f"saving {out/'checkpoint-4'}" in msg and 'resumes from checkpoint-2' in msg, msg
    assert latest_checkpoint(out).name == 'checkpoint-2' and not (out/'checkpoint-4').exists()
    monkeypatch.undo()
    (tiny_fs/'filler').unlink()
    resume_after_disk_full(work, 'realfull', out)


if __name__ == '__main__':  # the child: train CONFIG recording into RECORD, SIGKILL in step KILL_AT
    train_recorded(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))

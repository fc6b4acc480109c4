"""Trackers, read back: one `axolotl-nb train` of a tiny LoRA model (4 steps, a loss logged every step) with MLflow
(local sqlite store), Weights & Biases (offline) and TensorBoard (the default) all on, then each tracker's own store is
read back and compared with the trainer's log history (`checkpoint-4/trainer_state.json`).

Rank 0 only under torchrun: see tests/test_multinode.py (its 2-process run has MLflow and TensorBoard on and finds one
MLflow run and one event file).
"""
import json, math, os, struct, subprocess
from pathlib import Path

import pytest

mlflow = pytest.importorskip('mlflow', reason="extra `tracking`: pip install 'axolotl_nb[tracking]'")
pytest.importorskip('wandb', reason="extra `tracking`: pip install 'axolotl_nb[tracking]'")
from axolotl_nb.models import save_tiny_model
from toys import CLI, LORA, REPEAT_WORDS, logged_losses, run_yaml, write_jsonl


def tiny_run(tmp_path:Path, **extra) -> Path:
    "`tmp_path/out.yml`: a tiny LoRA SFT run (4 steps, batch 2, loss logged each step, checkpoint at step 4)."
    save_tiny_model(tmp_path/'tiny')
    spans = [' '.join(REPEAT_WORDS[i:i + 5]) for i in range(12)]
    write_jsonl(tmp_path/'train.jsonl', [dict(instruction='Repeat: ' + s, input='', output=s) for s in spans])
    # use_tensorboard=True only undoes run_yaml's False: True is the schema default (config.py), what a user gets
    return run_yaml(tmp_path, 'out', **LORA, micro_batch_size=2, save_steps=4, seed=3, use_tensorboard=True, **extra)

def wandb_records(path:Path):
    "Protobuf `Record`s of an offline `.wandb` file (a LevelDB-style log: 7-byte header, 32 KiB blocks of chunks)."
    from wandb.proto import wandb_internal_pb2 as pb
    data, pos, buf = path.read_bytes(), 7, b''
    while pos + 7 <= len(data):
        if 32768 - (pos % 32768) < 7:
            pos += 32768 - (pos % 32768)  # block trailer: padding
            continue
        _, n, kind = struct.unpack('<IHB', data[pos:pos + 7])
        buf, pos = buf + data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            r = pb.Record()
            r.ParseFromString(buf)
            buf = b''
            yield r
        if kind == 0 and n == 0: break

def test_trackers_read_back(tmp_path):
    db = tmp_path/'mlflow.db'
    cfg = tiny_run(tmp_path, mlflow_tracking_uri=f'sqlite:///{db}', mlflow_experiment_name='axolotl-nb-test',
                   hf_mlflow_log_artifacts=True, wandb_project='axolotl-nb-test', wandb_name='tiny-run',
                   wandb_run_id='tinyrun01', wandb_log_model='end', wandb_mode='offline')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'WANDB_SILENT': 'true', 'HF_HUB_OFFLINE': '1'}
    r = subprocess.run([CLI, 'train', str(cfg)], capture_output=True, text=True, timeout=600, env=env,
                       cwd=tmp_path)  # MLflow's sqlite store puts artifacts under ./mlruns of the cwd
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    out = tmp_path/'out'
    losses = logged_losses(out, 4)
    assert sorted(losses) == [1, 2, 3, 4] and all(math.isfinite(v) for v in losses.values())

    # MLflow: one run in the named experiment; resolved config in params, loss per step, final artifacts
    client = mlflow.MlflowClient(f'sqlite:///{db}')
    exp = client.get_experiment_by_name('axolotl-nb-test')
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    p = run.data.params
    assert p.get('cfg.lora_r') == '8' and p.get('cfg.sequence_len') == '256', p                 # the resolved config
    assert p.get('cfg.base_model') == str(tmp_path/'tiny') and p.get('learning_rate') == '0.001'  # + TrainingArguments
    ml = {m.step: m.value for m in client.get_metric_history(run.info.run_id, 'loss')}
    assert ml.keys() == losses.keys() and all(math.isclose(ml[s], losses[s], rel_tol=1e-6) for s in losses), ml
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {'adapter_model.safetensors', 'adapter_config.json', 'loss_curve.png', 'axolotl_nb_config.yml'} <= arts, arts

    # W&B offline: the run dir named by wandb_run_id; project, name, loss history, model artifact in its log
    run_dirs = list((out/'wandb').glob('offline-run-*-tinyrun01'))
    assert len(run_dirs) == 1, list((out/'wandb').iterdir())
    recs = list(wandb_records(run_dirs[0]/'run-tinyrun01.wandb'))
    info = next(r.run for r in recs if r.WhichOneof('record_type') == 'run')
    assert (info.project, info.display_name, info.run_id) == ('axolotl-nb-test', 'tiny-run', 'tinyrun01')
    wb = {}
    for r in recs:
        if r.WhichOneof('record_type') == 'history':
            row = {i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            if 'train/loss' in row: wb[row['train/global_step']] = row['train/loss']
    assert wb.keys() == losses.keys() and all(math.isclose(wb[s], losses[s], rel_tol=1e-6) for s in losses), wb
    assert any(r.WhichOneof('record_type') == 'artifact' and r.artifact.type == 'model' for r in recs)

    # TensorBoard (default on): the event file's train/loss scalars are the trainer's losses
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = list((out/'runs').rglob('events.out.tfevents.*'))
    assert len(events) == 1, events
    ea = EventAccumulator(str(events[0]))
    ea.Reload()
    tb = {e.step: e.value for e in ea.Scalars('train/loss')}
    assert tb.keys() == losses.keys() and all(math.isclose(tb[s], losses[s], rel_tol=1e-6) for s in losses), tb

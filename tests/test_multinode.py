"""Past one machine: multi-node is `torchrun --nnodes N`. Two launchers on localhost (`--nnodes 2 --nproc_per_node 1`,
c10d rendezvous on 127.0.0.1) run `axolotl-nb train` with FSDP2 + LoRA on a tiny Llama; their losses equal one launcher
running 2 processes (same global batch: 2 ranks x 1 row), checkpoints and final files are written once, only rank 0
prints the training summary, and the trackers log from rank 0 only (one MLflow run, one TensorBoard event file).
The SLURM and plain-SSH recipes are in docs/multinode.md.

Tolerance: fp32 on gloo; the two jobs differ only in how the processes were started, so losses agree to 1e-5 relative.
"""
import json, math, os, subprocess, sys
from pathlib import Path

import pytest

from axolotl_nb.models import save_tiny_model
from toys import CLI, LORA, REPEAT_WORDS, free_port, run_yaml, write_jsonl

pytestmark = pytest.mark.distributed
TORCHRUN = [sys.executable, '-m', 'torch.distributed.run']

def job(tmp_path:Path, name:str) -> Path:
    "A config for one job: FSDP2 + LoRA, 4 steps, checkpoints at 2 and 4, MLflow (sqlite) + TensorBoard on."
    w = REPEAT_WORDS
    write_jsonl(tmp_path/'train.jsonl', [dict(instruction='Repeat: ' + ' '.join(w[i:i + 6]), input='',
                                              output=' '.join(w[i:i + 6])) for i in range(12)])
    return run_yaml(tmp_path, name, dataset_prepared_path=str(tmp_path/f'prepared-{name}'), **LORA, fsdp_version=2,
                    fsdp=['full_shard', 'auto_wrap'], fsdp_config=dict(fsdp_state_dict_type='FULL_STATE_DICT'),
                    use_tensorboard=True, mlflow_tracking_uri=f"sqlite:///{tmp_path/name}.db",
                    mlflow_experiment_name=name)

def losses(out:Path) -> dict:
    hist = json.loads((out/'checkpoint-4'/'trainer_state.json').read_text())['log_history']
    return {h['step']: h['loss'] for h in hist if 'loss' in h}

def test_two_launchers_equal_one(tmp_path):
    save_tiny_model(tmp_path/'tiny')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1'}
    one = subprocess.run([*TORCHRUN, '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
                          '--master_port', str(free_port()), CLI, 'train', str(job(tmp_path, 'one'))],
                         capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr[-4000:]
    rdzv = ['--nnodes', '2', '--nproc_per_node', '1', '--rdzv_backend', 'c10d', '--rdzv_id', 'tiny',
            '--rdzv_endpoint', f'127.0.0.1:{free_port()}']
    cfg2 = job(tmp_path, 'two')
    nodes = [subprocess.Popen([*TORCHRUN, *rdzv, CLI, 'train', str(cfg2)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    res = [p.communicate(timeout=600) for p in nodes]
    assert all(p.returncode == 0 for p in nodes), [e[-3000:] for _, e in res]

    a, b = losses(tmp_path/'one'), losses(tmp_path/'two')
    assert sorted(a) == [1, 2, 3, 4] and a.keys() == b.keys(), (a, b)
    assert all(math.isclose(a[s], b[s], rel_tol=1e-5) for s in a), (a, b)
    out = tmp_path/'two'
    assert sorted(d.name for d in out.glob('checkpoint-*')) == ['checkpoint-2', 'checkpoint-4']
    assert (out/'adapter_model.safetensors').exists() and not list(out.glob('.tmp*')) and not list(out.glob('.*.tmp*'))
    stdout = one.stdout + ''.join(o for o, _ in res)
    assert stdout.count('training summary') == 2, stdout[-3000:]          # once per job: rank 0 only
    for name in ('one', 'two'):
        import mlflow
        client = mlflow.MlflowClient(f"sqlite:///{tmp_path/name}.db")
        assert len(client.search_runs([client.get_experiment_by_name(name).experiment_id])) == 1
        assert len(list((tmp_path/name/'runs').rglob('events.out.tfevents.*'))) == 1

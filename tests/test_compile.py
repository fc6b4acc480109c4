"torch_compile: the compiled model trains packed LoRA rows to the losses eager PyTorch logs (CPU, aot_eager backend)."
import json, random, sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from toys import LORA, REPEAT_WORDS, run_yaml, write_jsonl  # noqa: E402

from axolotl_nb.models import save_tiny_model  # noqa: E402
from axolotl_nb.load import load_config  # noqa: E402
from axolotl_nb.run import train  # noqa: E402


def _losses(out: Path) -> list[float]:
    hist = json.loads((out / 'checkpoint-3' / 'trainer_state.json').read_text())['log_history']
    return [h['loss'] for h in hist if 'loss' in h]


def test_compiled_losses_equal_eager(tmp_path):
    "aot_eager: dynamo's graph capture + AOT autograd without inductor's codegen (an inductor compile takes minutes)."
    save_tiny_model(tmp_path / 'tiny')
    rng = random.Random(0)
    words = lambda k: ' '.join(rng.choices(REPEAT_WORDS, k=k))  # noqa: E731
    write_jsonl(tmp_path / 'train.jsonl', [dict(instruction=words(rng.randint(3, 12)), input='',
                                                output=words(rng.randint(3, 20))) for _ in range(48)])
    kw = dict(sequence_len=256, sample_packing=True, max_steps=3, save_steps=3, **LORA)
    torch._dynamo.reset()
    frames = torch._dynamo.utils.counters['frames']
    train(load_config(run_yaml(tmp_path, 'eager', **kw)))
    assert frames['ok'] == 0  # eager: nothing compiled
    train(load_config(run_yaml(tmp_path, 'compiled', torch_compile=True, torch_compile_backend='aot_eager', **kw)))
    assert frames['ok'] > 0  # dynamo captured graphs: the compiled module ran
    eager, compiled = _losses(tmp_path / 'eager'), _losses(tmp_path / 'compiled')
    assert len(eager) == 3
    for a, b in zip(eager, compiled): assert abs(a - b) < 1e-6, (eager, compiled)

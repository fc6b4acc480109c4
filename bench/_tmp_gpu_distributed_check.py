import torch, tempfile, warnings, os, sys
warnings.simplefilter('ignore')
import transformers, accelerate, peft, bitsandbytes as b
print(torch.__version__, torch.cuda.is_available(), transformers.__version__, accelerate.__version__, peft.__version__, b.__version__, flush=True)
from transformers import LlamaConfig, LlamaForCausalLM, BitsAndBytesConfig
from peft import LoraConfig, get_peft_model
import torch.distributed as dist
sys.path.insert(0, '.')
from axolotl_nb.distributed import fsdp2_wrap, backend_for_device
from axolotl_nb.config import UserError
os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT='29511')
dist.init_process_group(backend_for_device('cuda'), rank=0, world_size=1, device_id=torch.device('cuda:0'))
print('backend', dist.get_backend(), flush=True)
torch.manual_seed(0); d = tempfile.mkdtemp()
LlamaForCausalLM(LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=512)).save_pretrained(d)
ids = torch.randint(0, 512, (2, 64), device='cuda')
for st in (torch.bfloat16, torch.float32):
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_storage=st, bnb_4bit_quant_type='nf4')
    m = LlamaForCausalLM.from_pretrained(d, quantization_config=q, dtype=torch.bfloat16, device_map={'': 0})
    m = get_peft_model(m, LoraConfig(r=8, target_modules=['q_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']))
    m.train(); ref = m(ids, labels=ids).loss.item()
    try:
        fsdp2_wrap(m, mp='bf16')
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
        ls = []
        for _ in range(3):
            l = m(ids, labels=ids).loss; l.backward(); opt.step(); opt.zero_grad(); ls.append(round(l.item(), 4))
        print(st, 'ref', round(ref, 4), 'fsdp losses', ls, 'peak MiB', torch.cuda.max_memory_allocated() >> 20, flush=True)
    except UserError as e: print(st, 'UserError:', str(e)[:140], flush=True)
dist.destroy_process_group()

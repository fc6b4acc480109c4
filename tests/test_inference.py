"""The terminal chat (`axolotl-nb inference cfg.yml` without `--prompt`) driven through a pseudo-terminal, as a
user would: history kept across turns, Ctrl-C stops an answer (not the program), Ctrl-D and Ctrl-C at the prompt quit
cleanly.

The model is a tiny random Llama. For the Ctrl-C test it is made to never end an answer by itself (no end-of-sequence
id in its generation config), so a 2000-token answer takes seconds and there is something to interrupt.
"""
import re, sys, time
from pathlib import Path

import pexpect

from axolotl_nb.load import load_config
from axolotl_nb.inference import generate, load_for_inference
from toys import CLI, chat_config

ENV = {'OMP_NUM_THREADS': '1', 'TERM': 'dumb', 'PATH': str(Path(sys.executable).parent) + ':/usr/bin:/bin'}

def spawn(cfg:Path, *args) -> pexpect.spawn:
    child = pexpect.spawn(CLI, ['inference', str(cfg), *args], env=ENV, encoding='utf-8', codec_errors='replace',
                          timeout=120, dimensions=(50, 400))
    child.expect_exact('>>> ')
    return child

def turn(child:pexpect.spawn, line:str) -> str:
    "Send one line, return the answer printed before the next prompt (the echoed line removed)."
    child.sendline(line)
    child.expect_exact('>>> ')
    return child.before.replace('\r\n', '\n').split('\n', 1)[1]

def letters(s:str) -> str: return re.sub(r'[^0-9A-Za-z]', '', s)  # the terminal may mangle the random model's bytes

def test_terminal_chat_keeps_history_and_ctrl_d_quits(tmp_path):
    cfg = chat_config(tmp_path)
    child = spawn(cfg, '--max-new-tokens', '8')
    a1, a2 = turn(child, 'Say hello'), turn(child, '1 + 1 =')
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and 'Traceback' not in child.before
    model, tok, _ = load_for_inference(load_config(str(cfg)))
    u1, u2 = {'role': 'user', 'content': 'Say hello'}, {'role': 'user', 'content': '1 + 1 ='}
    r1 = generate(model, tok, [u1], 8)
    r2 = generate(model, tok, [u1, {'role': 'assistant', 'content': r1}, u2], 8)
    assert letters(a1) == letters(r1) and letters(a2) == letters(r2)   # the second answer saw the first turn ...
    assert letters(r2) != letters(generate(model, tok, [u2], 8))       # ... and that changes it

def test_terminal_chat_ctrl_c_stops_answer_then_quits(tmp_path):
    cfg = chat_config(tmp_path, endless=True)
    child = spawn(cfg, '--max-new-tokens', '2000')
    child.sendline('Say hello')
    child.expect(r'Say hello\r\n.{20}')      # the answer is streaming
    t0 = time.perf_counter()
    child.sendintr()
    child.expect_exact('[stopped]', timeout=10)
    child.expect_exact('>>> ', timeout=10)
    stopped_after = time.perf_counter() - t0
    partial = child.before
    second = turn(child, 'and again')          # the chat goes on after a stopped answer
    child.sendintr()                            # Ctrl-C at the prompt quits
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and 'Traceback' not in child.before, child.before
    assert stopped_after < 5, stopped_after
    assert len(partial) < 1000, len(partial)   # far from the 2000-token budget (~4000+ characters)
    assert len(second) > 1000                   # uninterrupted: the full budget
    assert len(letters(second)) > 0

